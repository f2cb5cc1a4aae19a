"""HTTP routes of the prediction API: ``health``, ``events``, ``stats``, ``admin`` (each has a ``router``)."""
