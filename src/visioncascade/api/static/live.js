// The live camera page: camera frames → /v1/live (WebSocket) → cascade results and rule-chosen outputs.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const MAX_FPS = 15;         // frames sent per second at most
  const FRAME_WIDTH = 320;    // the server resizes again to each model's input; 320 px keeps JPEGs 10–20 kB
  const DEVICE_KEY = "visioncascade.device";
  const deviceId = localStorage.getItem(DEVICE_KEY) || (() => {
    const id = "browser-" + VC.uuid(); localStorage.setItem(DEVICE_KEY, id); return id;
  })();
  const live = { ws: null, stream: null, running: false, inflight: false, cascades: [], sentAt: 0, times: [] };
  const canvas = document.createElement("canvas");

  function status(text, isError = false) {
    $("status").textContent = text;
    $("status").classList.toggle("error", isError);
  }

  function fillContexts() {
    const cascade = live.cascades.find((c) => c.name === $("cascade").value);
    $("context").replaceChildren(...(cascade ? cascade.contexts : []).map((c) => VC.el("option", { value: c, text: c })));
  }

  async function loadCascades() {
    try {
      live.cascades = await VC.api("/v1/cascades");
    } catch (error) {
      status(error.status === 401 || error.status === 403 ? "Enter an ingest key: " + error.message : error.message, true);
      $("start").disabled = true;
      return;
    }
    if (!live.cascades.length) {
      status("This server runs no cascades: start it with `visioncascade serve --cascade cascade.yaml`.", true);
      $("start").disabled = true;
      return;
    }
    $("cascade").replaceChildren(...live.cascades.map((c) => VC.el("option", { value: c.name, text: c.name })));
    fillContexts();
    $("start").disabled = false;
    status("Ready: choose a cascade and a context, then start the camera.");
  }

  function bars(container, stage) {
    const top = stage.probabilities.indexOf(Math.max(...stage.probabilities));
    container.replaceChildren(...stage.labels.map((label, i) => {
      const p = stage.probabilities[i];
      return VC.el("div", { class: "bar" + (i === top ? " top" : "") },
        VC.el("span", { text: label }),
        VC.el("span", { class: "track" },
          VC.el("span", { class: "fill", style: `width:${(100 * p).toFixed(1)}%` }),
          VC.el("span", { class: "thr", style: `left:${(100 * stage.threshold).toFixed(1)}%`, title: "threshold" })),
        VC.el("span", { class: "num", text: p.toFixed(3) }));
    }));
  }

  function showStage(prefix, stage) {
    $(prefix + "-label").textContent = stage ? stage.top_label : "–";
    $(prefix + "-prob").textContent = stage ? stage.top_probability.toFixed(3) : "";
    if (stage) bars($(prefix + "-bars"), stage); else $(prefix + "-bars").replaceChildren();
  }

  function render(msg) {
    const [domain, specialist] = msg.stages;
    showStage("domain", domain);
    showStage("specialist", specialist);
    $("specialist-name").textContent = specialist ? `· ${msg.specialist} (${specialist.model})` : "";
    $("decision").textContent = msg.decision.replace("_", " ");
    $("decision").className = "badge " + msg.decision;
    $("caption").textContent = domain.top_label + (specialist ? " → " + specialist.top_label : "");
    $("latency").textContent = msg.latency_ms.toFixed(2);
    $("frames").textContent = msg.frame;
    $("events-stored").textContent = msg.events_stored;
    if (msg.output !== null && msg.output !== undefined) {
      $("output").textContent = JSON.stringify(msg.output, null, 2);
      $("rule").textContent = msg.rule ? "rule: " + msg.rule : "default output";
    }
    if (msg.error) status("Event not stored: " + msg.error, true);
    const now = performance.now();
    live.times.push(now);
    while (live.times.length && now - live.times[0] > 2000) live.times.shift();
    if (live.times.length > 1) $("fps").textContent = ((live.times.length - 1) / ((now - live.times[0]) / 1000)).toFixed(1);
  }

  function sendFrame() {
    const video = $("video");
    if (!live.running || live.inflight || !video.videoWidth) {
      if (live.running && !live.inflight) setTimeout(sendFrame, 50);
      return;
    }
    const scale = Math.min(1, FRAME_WIDTH / video.videoWidth);
    canvas.width = Math.round(video.videoWidth * scale);
    canvas.height = Math.round(video.videoHeight * scale);
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    live.inflight = true;
    live.sentAt = performance.now();
    canvas.toBlob((blob) => {
      if (live.running && live.ws && live.ws.readyState === WebSocket.OPEN) live.ws.send(blob);
      else live.inflight = false;
    }, "image/jpeg", 0.85);
  }

  function nextFrame() {
    const wait = Math.max(0, 1000 / MAX_FPS - (performance.now() - live.sentAt));
    setTimeout(sendFrame, wait);  // one frame in flight: a slow server lowers the rate, never queues
  }

  async function start() {
    $("start").disabled = true;
    status("Opening the camera…");
    try {
      live.stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
    } catch (error) {
      status("No camera: " + error.message + " (the page needs localhost or HTTPS, and your permission).", true);
      $("start").disabled = false;
      return;
    }
    const video = $("video");
    video.srcObject = live.stream;
    await video.play();
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + "/v1/live");
    live.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({
      type: "start", key: VC.key() || null, cascade: $("cascade").value, context: $("context").value,
      device_id: deviceId, session_id: VC.uuid(),
    }));
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "ready") {
        live.running = true;
        $("start").textContent = "Stop"; $("start").classList.add("stop"); $("start").disabled = false;
        status(`Running ${msg.cascade.name} in context ${msg.context}.`);
        sendFrame();
      } else if (msg.type === "result") {
        live.inflight = false;
        render(msg);
        nextFrame();
      } else if (msg.type === "context") {
        status(`Running ${$("cascade").value} in context ${msg.context}.`);
      } else if (msg.type === "error") {
        status(msg.detail, true);
        if (live.inflight) { live.inflight = false; nextFrame(); }
      }
    };
    ws.onclose = (event) => {
      if (live.ws === ws) stop(event.code >= 4000 ? null : "Connection closed.");
    };
  }

  function stop(message = "Stopped.") {
    live.running = false;
    live.inflight = false;
    const ws = live.ws; live.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close();
    if (live.stream) live.stream.getTracks().forEach((t) => t.stop());
    live.stream = null;
    $("start").textContent = "Start camera"; $("start").classList.remove("stop"); $("start").disabled = false;
    if (message) status(message);
  }

  $("controls").addEventListener("submit", (event) => event.preventDefault());
  $("start").addEventListener("click", () => (live.running ? stop() : start()));
  $("cascade").addEventListener("change", () => { fillContexts(); if (live.running) { stop(null); start(); } });
  $("context").addEventListener("change", () => {
    if (live.ws && live.running) live.ws.send(JSON.stringify({ type: "context", context: $("context").value }));
  });
  VC.bindKeyInput($("key"), () => { if (live.running) stop(); loadCascades(); });
  loadCascades();
})();
