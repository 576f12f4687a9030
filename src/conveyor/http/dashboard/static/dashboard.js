// Conveyor dashboard: keeps pages live without reloading them. Served as a file (the page's
// Content-Security-Policy allows no inline script); no build step, no dependency.
"use strict";

(function () {
  // While a batch runs the list is redrawn every second; otherwise every few seconds, so
  // that a batch submitted meanwhile shows up. A hidden tab asks for nothing.
  const LIST_POLL_MS = 1000;
  const IDLE_POLL_MS = 5000;

  function formatCount(n) {
    return Number(n).toLocaleString("en-US");
  }

  function followList(tbody) {
    const src = tbody.dataset.liveRows;
    async function poll() {
      if (!document.hidden) {
        try {
          const response = await fetch(src, { credentials: "same-origin", cache: "no-store" });
          if (!response.ok) return; // signed out, or the server is gone: stop quietly
          tbody.innerHTML = await response.text();
          tbody.dataset.running = response.headers.get("X-Conveyor-Running") || "false";
        } catch (error) {
          // A network blip: try again on the next tick.
        }
      }
      setTimeout(poll, tbody.dataset.running === "true" ? LIST_POLL_MS : IDLE_POLL_MS);
    }
    setTimeout(poll, tbody.dataset.running === "true" ? LIST_POLL_MS : IDLE_POLL_MS);
  }

  // One batch: progress from server-sent events; once it finishes, its panel (actions and
  // failures) is fetched again, since what can be done with it has changed.
  function followBatch(section) {
    if (section.dataset.running !== "true") return;
    const bar = section.querySelector("progress");
    const field = (name) => section.querySelector(`[data-field="${name}"]`);
    const events = new EventSource(section.dataset.progressSrc);

    function draw(batch) {
      bar.max = Math.max(batch.total, 1);
      bar.value = batch.finished;
      bar.textContent = `${batch.percent}%`;
      field("percent").textContent = batch.percent;
      field("finished").textContent = formatCount(batch.finished);
      field("total").textContent = formatCount(batch.total);
      field("errored").textContent = formatCount(batch.errored);
      field("rate").textContent = Number(batch.rate).toFixed(1);
      field("eta").textContent = batch.running ? batch.eta || "…" : "—";
      const status = field("status");
      status.textContent = batch.status + (batch.canceled ? " (canceled)" : "");
      status.className = `badge status-${batch.status}`;
      if (batch.completed_at) field("completed_at").textContent = batch.completed_at;
      section.dataset.finished = String(batch.finished);
    }

    async function refreshPanel() {
      const response = await fetch(section.dataset.panelSrc, {
        credentials: "same-origin",
        cache: "no-store",
      });
      if (response.ok) document.getElementById("batch-panel").innerHTML = await response.text();
    }

    events.addEventListener("progress", (event) => draw(JSON.parse(event.data)));
    events.addEventListener("finished", (event) => {
      events.close();
      draw(JSON.parse(event.data));
      section.dataset.running = "false";
      refreshPanel();
    });
    events.addEventListener("deleted", () => {
      events.close();
      field("status").textContent = "deleted";
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const rows = document.querySelector("[data-live-rows]");
    if (rows) followList(rows);
    const progress = document.querySelector("[data-progress-src]");
    if (progress) followBatch(progress);
  });
})();
