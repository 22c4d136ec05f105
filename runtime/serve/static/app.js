// The kiosk page: choose or drop a photo, pick options, restore, compare, download.
// Talks to the service's own API only (/v1/info, /v1/restore/json). No external resources.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const state = { file: null, info: null, beforeUrl: null, resultUrl: null, busy: false, retryTimer: null };
  const BROWSER_IMAGES = ["image/png", "image/jpeg", "image/webp", "image/bmp", "image/gif"];

  function apiHeaders() {
    const key = $("api-key").value.trim();
    return key ? { "X-API-Key": key } : {};
  }

  function setStatus(text, kind) {
    const badge = $("service-status");
    badge.textContent = text;
    badge.dataset.state = kind;
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function setProgress(fraction, text) {
    const box = $("progress");
    box.hidden = false;
    box.classList.toggle("indeterminate", fraction === null);
    $("progress-fill").style.width = fraction === null ? "" : `${Math.round(fraction * 100)}%`;
    $("progress-text").textContent = text;
  }

  function refreshButton() {
    $("restore-button").disabled = !(state.file && state.info && state.info.ready) || state.busy;
  }

  function applyInfo(info) {
    state.info = info;
    const modes = info.modes || [];
    $("opt-scratch").disabled = !modes.includes("scratch");
    $("opt-hr").disabled = !modes.includes("hr");
    if (!modes.includes("quality") && modes.includes("scratch")) {  // a scratch-only station
      $("opt-scratch").checked = true;
    }
    const facesAnywhere = Object.values(info.faces || {}).some(Boolean);
    $("opt-faces").disabled = !facesAnywhere;
    $("opt-faces").closest("label").classList.toggle("disabled", !facesAnywhere);
    $("faces-note").textContent = facesAnywhere ? "" : "(not available on this station)";
    if (facesAnywhere && !$("opt-faces").dataset.touched) $("opt-faces").checked = true;
    $("auth").hidden = !info.auth_required;
    setStatus(info.ready ? "ready" : "loading models…", info.ready ? "ready" : "loading");
    refreshButton();
  }

  async function loadInfo() {
    try {
      const response = await fetch("/v1/info", { cache: "no-store", headers: apiHeaders() });
      if (response.status === 401) {  // the station has a key: ask for it, then try again
        $("auth").hidden = false;
        setStatus("API key needed", "loading");
        setTimeout(loadInfo, 1500);
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const info = await response.json();
      applyInfo(info);
      if (!info.ready) setTimeout(loadInfo, 1000);
    } catch (err) {
      setStatus("starting…", "loading");
      setTimeout(loadInfo, 1500);
    }
  }

  function chooseFile(file) {
    if (!file) return;
    if (state.info && file.size > state.info.limits.max_bytes) {
      showError(`${file.name} is too large (${(file.size / 1e6).toFixed(1)} MB; at most ` +
                `${(state.info.limits.max_bytes / 1e6).toFixed(0)} MB).`);
      return;
    }
    showError("");
    state.file = file;
    $("file-name").textContent = file.name;
    refreshButton();
  }

  function mode() {
    if ($("opt-hr").checked) return "hr";
    if ($("opt-scratch").checked) return "scratch";
    return "quality";
  }

  function base64ToBlob(data, type) {
    const bytes = atob(data);
    const array = new Uint8Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) array[i] = bytes.charCodeAt(i);
    return new Blob([array], { type });
  }

  function formatSeconds(value) {
    return value >= 1 ? `${value.toFixed(2)} s` : `${(value * 1000).toFixed(0)} ms`;
  }

  function showResult(body) {
    if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
    if (state.beforeUrl) URL.revokeObjectURL(state.beforeUrl);
    const restored = base64ToBlob(body.image_png_base64, "image/png");
    state.resultUrl = URL.createObjectURL(restored);
    const before = body.original_png_base64 ? base64ToBlob(body.original_png_base64, "image/png") : state.file;
    state.beforeUrl = URL.createObjectURL(before);
    const panel = $("result-panel");
    let pending = 2;
    const loaded = () => { if (--pending === 0) { panel.dataset.loaded = "true"; } };
    panel.dataset.loaded = "false";
    $("before-image").onload = loaded;
    $("after-image").onload = loaded;
    $("before-image").src = state.beforeUrl;
    $("after-image").src = state.resultUrl;
    const link = $("download-link");
    link.href = state.resultUrl;
    link.download = body.filename || "restored.png";
    const rows = Object.entries(body.timings).map(
      ([name, value]) => `<tr><td>${name.replace(/_/g, " ")}</td><td>${formatSeconds(value)}</td></tr>`);
    $("timings").innerHTML = rows.join("");
    setSlider(50);
    panel.hidden = false;
  }

  function setSlider(value) {
    $("compare-slider").value = value;
    $("after-image").style.clipPath = `inset(0 0 0 ${value}%)`;
    $("divider").style.left = `${value}%`;
  }

  function restore() {
    if (!state.file || state.busy) return;
    clearTimeout(state.retryTimer);
    state.busy = true;
    refreshButton();
    showError("");
    const params = new URLSearchParams({ mode: mode(), faces: $("opt-faces").checked ? "1" : "0",
                                         filename: state.file.name });
    if (!BROWSER_IMAGES.includes(state.file.type)) params.set("original", "1");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/restore/json?${params}`);
    for (const [name, value] of Object.entries(apiHeaders())) xhr.setRequestHeader(name, value);
    xhr.setRequestHeader("Content-Type", state.file.type || "application/octet-stream");
    xhr.responseType = "json";
    const started = performance.now();
    let ticker = null;
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) setProgress(0.5 * event.loaded / event.total, "Uploading…");
    };
    xhr.upload.onload = () => {
      const tick = () => {
        const seconds = ((performance.now() - started) / 1000).toFixed(0);
        setProgress(null, `Restoring… ${seconds} s`);
      };
      tick();
      ticker = setInterval(tick, 500);
    };
    xhr.onprogress = (event) => {
      if (event.lengthComputable && event.loaded < event.total) {
        clearInterval(ticker);
        setProgress(0.5 + 0.5 * event.loaded / event.total, "Receiving the result…");
      }
    };
    const finish = () => { clearInterval(ticker); state.busy = false; refreshButton(); };
    xhr.onerror = () => { finish(); $("progress").hidden = true; showError("The station did not answer. Try again."); };
    xhr.onload = () => {
      finish();
      const body = xhr.response || {};
      if (xhr.status === 200) {
        setProgress(1, `Done in ${formatSeconds((performance.now() - started) / 1000)}.`);
        showResult(body);
        return;
      }
      if (xhr.status === 429 || xhr.status === 503) {
        const wait = parseInt(xhr.getResponseHeader("Retry-After") || "5", 10);
        setProgress(null, `The station is busy; trying again in ${wait} s…`);
        state.retryTimer = setTimeout(restore, wait * 1000);
        return;
      }
      $("progress").hidden = true;
      showError(body.error || `The photo could not be restored (HTTP ${xhr.status}).`);
    };
    xhr.send(state.file);
  }

  function init() {
    const zone = $("drop-zone");
    $("file-input").addEventListener("change", (e) => chooseFile(e.target.files[0]));
    zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file-input").click(); });
    ["dragenter", "dragover"].forEach((name) => zone.addEventListener(name, (e) => {
      e.preventDefault();
      zone.classList.add("dragging");
    }));
    ["dragleave", "drop"].forEach((name) => zone.addEventListener(name, () => zone.classList.remove("dragging")));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      chooseFile(e.dataTransfer.files[0]);
    });
    document.addEventListener("dragover", (e) => e.preventDefault());
    document.addEventListener("drop", (e) => e.preventDefault());
    $("opt-hr").addEventListener("change", () => { if ($("opt-hr").checked) $("opt-scratch").checked = true; });
    $("opt-scratch").addEventListener("change", () => { if (!$("opt-scratch").checked) $("opt-hr").checked = false; });
    $("opt-faces").addEventListener("change", () => { $("opt-faces").dataset.touched = "1"; });
    $("compare-slider").addEventListener("input", (e) => setSlider(e.target.value));
    $("restore-button").addEventListener("click", restore);
    $("again-button").addEventListener("click", () => {
      $("result-panel").hidden = true;
      $("progress").hidden = true;
      state.file = null;
      $("file-input").value = "";
      $("file-name").textContent = "";
      refreshButton();
      zone.focus();
    });
    const saved = sessionStorage.getItem("trt-restore-api-key");
    if (saved) $("api-key").value = saved;
    $("api-key").addEventListener("change", () => sessionStorage.setItem("trt-restore-api-key", $("api-key").value));
    loadInfo();
  }

  init();
})();
