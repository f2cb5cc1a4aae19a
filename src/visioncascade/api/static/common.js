// Shared by the pages: the API key (from #key=… once, then localStorage), authorised fetch, small helpers.
"use strict";

const VC = (() => {
  const KEY = "visioncascade.key";

  function takeKeyFromHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const key = params.get("key");
    if (key) {
      localStorage.setItem(KEY, key);
      history.replaceState(null, "", location.pathname + location.search);  // keep keys out of history
    }
  }

  function key() { return localStorage.getItem(KEY) || ""; }
  function setKey(value) { value ? localStorage.setItem(KEY, value) : localStorage.removeItem(KEY); }

  async function api(path) {
    const headers = key() ? { Authorization: "Bearer " + key() } : {};
    const response = await fetch(path, { headers });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(body.detail || response.status + " " + response.statusText);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (name === "style") node.style.cssText = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value);
    }
    node.append(...children);
    return node;
  }

  function bindKeyInput(input, onChange) {
    input.value = key();
    input.addEventListener("change", () => { setKey(input.value.trim()); onChange(); });
  }

  takeKeyFromHash();
  return { key, setKey, api, uuid, el, bindKeyInput };
})();
