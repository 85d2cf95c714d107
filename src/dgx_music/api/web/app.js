// dgx-music page: submit a prompt, follow the job, play and manage tracks.
// Plain JavaScript, no build step, no external resources; talks only to /api/v1.
"use strict";

(() => {
  const API = "/api/v1";
  const POLL_MS = 500; // how often an active job is polled
  const HISTORY_POLL_MS = 2000; // how often the history refreshes while it shows active jobs
  const PAGE_SIZE = 10;
  const FINAL = new Set(["completed", "failed", "cancelled"]);
  const FORM_FIELDS = ["prompt", "duration", "model", "seed"];
  const KEY_STORAGE = "dgx-music-api-key";

  const state = {
    currentId: null,
    pollTimer: null,
    historyTimer: null,
    historyOffset: 0,
    objectUrls: [],
    continueFrom: null, // the completed generation the next submission continues
  };

  const $ = (id) => document.getElementById(id);

  // --- talking to the API ---------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `the server answered ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  function authHeaders() {
    const key = $("api-key").value.trim();
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  async function api(path, options = {}) {
    const headers = { ...authHeaders(), ...(options.headers || {}) };
    let response;
    try {
      response = await fetch(API + path, { ...options, headers });
    } catch (error) {
      throw new ApiError(0, { message: "cannot reach the server; is dgx-music serve running?" });
    }
    const type = response.headers.get("content-type") || "";
    const body = type.includes("application/json") ? await response.json() : null;
    if (!response.ok) {
      throw new ApiError(response.status, body);
    }
    return body;
  }

  async function fetchBlobUrl(url) {
    const response = await fetch(url, { headers: authHeaders() });
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      throw new ApiError(response.status, body);
    }
    const objectUrl = URL.createObjectURL(await response.blob());
    state.objectUrls.push(objectUrl);
    return objectUrl;
  }

  function releaseObjectUrls() {
    state.objectUrls.forEach((url) => URL.revokeObjectURL(url));
    state.objectUrls = [];
  }

  // --- errors next to their fields -----------------------------------------------------

  function clearErrors() {
    for (const name of [...FORM_FIELDS, "api-key"]) {
      const input = $(name);
      const message = $(`${name}-error`);
      input.removeAttribute("aria-invalid");
      message.textContent = "";
      message.hidden = true;
    }
    $("form-error").hidden = true;
    $("form-error").textContent = "";
  }

  function showFieldError(name, text) {
    const input = $(name);
    const message = $(`${name}-error`);
    input.setAttribute("aria-invalid", "true");
    message.textContent = text;
    message.hidden = false;
  }

  function showFormError(text) {
    $("form-error").textContent = text;
    $("form-error").hidden = false;
  }

  function capitalise(text) {
    return text ? text[0].toUpperCase() + text.slice(1) : text;
  }

  function showApiError(error) {
    if (error.status === 401) {
      $("key-settings").open = true;
      showFieldError("api-key", error.message);
      $("api-key").focus();
      return;
    }
    const detail = (error.body && error.body.detail) || [];
    const unplaced = [];
    let first = null;
    for (const item of detail) {
      if (FORM_FIELDS.includes(item.field)) {
        const limit = item.limit ? ` (${item.limit})` : "";
        showFieldError(item.field, `${capitalise(item.message)}${limit}`);
        first = first || item.field;
      } else {
        unplaced.push(`${item.field}: ${item.message}`);
      }
    }
    if (unplaced.length || !detail.length) {
      showFormError(unplaced.join("; ") || error.message);
    }
    if (first) {
      $(first).focus();
    }
  }

  // --- submitting ------------------------------------------------------------------------

  function readForm() {
    const payload = {
      prompt: $("prompt").value,
      duration: $("duration").value === "" ? 0 : Number($("duration").value),
    };
    if ($("model").value) {
      payload.model = $("model").value;
    }
    const seed = $("seed").value.trim();
    if (seed !== "") {
      payload.seed = Number(seed);
    }
    if (state.continueFrom) {
      payload.continue_from = state.continueFrom.id;
    }
    return payload;
  }

  // "Extend": the next submission continues a finished track (its last 25 s condition the
  // model; the result is that track followed by the new seconds).
  function continueFrom(job) {
    state.continueFrom = job;
    $("prompt").value = job.prompt;
    if (job.model) {
      $("model").value = job.model;
    }
    $("continue-text").textContent =
      `Extends “${job.prompt}” (${formatSeconds(job.audio.duration)}): ` +
      "the duration is the new music added after it.";
    $("continue-note").hidden = false;
    $("submit-button").textContent = "Extend";
    $("generate-form").scrollIntoView({ behavior: "smooth", block: "start" });
    $("duration").focus();
  }

  function startFresh() {
    state.continueFrom = null;
    $("continue-note").hidden = true;
    $("submit-button").textContent = "Generate";
  }

  async function submit(event) {
    event.preventDefault();
    clearErrors();
    const button = $("submit-button");
    button.disabled = true;
    try {
      const job = await api("/generations", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(readForm()),
      });
      follow(job);
      startFresh();
      refreshHistory();
    } catch (error) {
      showApiError(error);
    } finally {
      button.disabled = false;
    }
  }

  // --- following the current job ---------------------------------------------------------

  function follow(job) {
    clearTimeout(state.pollTimer);
    state.currentId = job.id;
    $("current").dataset.jobId = job.id;
    releaseObjectUrls();
    $("result").hidden = true;
    $("player").removeAttribute("src");
    $("player").load();
    showJob(job);
    if (!FINAL.has(job.status)) {
      state.pollTimer = setTimeout(poll, POLL_MS);
    } else if (job.status === "completed") {
      showResult(job);
    }
  }

  async function poll() {
    const id = state.currentId;
    try {
      const job = await api(`/generations/${id}`);
      if (id !== state.currentId) {
        return;
      }
      showJob(job);
      if (FINAL.has(job.status)) {
        if (job.status === "completed") {
          await showResult(job);
        }
        refreshHistory();
        return;
      }
    } catch (error) {
      if (id !== state.currentId) {
        return;
      }
      $("job-status").textContent = `Cannot read the job: ${error.message}`;
      if (error.status === 404) {
        return;
      }
    }
    state.pollTimer = setTimeout(poll, POLL_MS);
  }

  function describeStatus(job) {
    switch (job.status) {
      case "pending":
        return "Waiting for a worker…";
      case "processing":
        return `Generating… ${Math.round(job.progress * 100)}%`;
      case "completed":
        return `Done in ${formatSeconds(job.generation_seconds)} of model time.`;
      case "failed":
        return "Failed.";
      case "cancelled":
        return "Cancelled.";
      default:
        return job.status;
    }
  }

  function showJob(job) {
    $("current").hidden = false;
    $("current-prompt").textContent = `“${job.prompt}”`;
    $("job-status").textContent = describeStatus(job);
    $("job-status").dataset.status = job.status;
    $("job-progress").value = job.status === "completed" ? 1 : job.progress;
    const failed = job.status === "failed" || job.status === "cancelled";
    $("job-error").hidden = !(failed && job.error);
    $("job-error").textContent = failed && job.error ? job.error : "";
    markSelected();
  }

  async function showResult(job) {
    const player = $("player");
    const link = $("download-link");
    const needsKey = Object.keys(authHeaders()).length > 0;
    try {
      if (needsKey) {
        // <audio> cannot send an Authorization header: fetch the file and play it from memory.
        const objectUrl = await fetchBlobUrl(job.audio.url);
        player.src = objectUrl;
        link.href = objectUrl;
      } else {
        player.src = job.audio.url;
        link.href = `${job.audio.url}?download=true`;
      }
    } catch (error) {
      $("job-error").textContent = `Cannot load the audio: ${error.message}`;
      $("job-error").hidden = false;
      return;
    }
    link.setAttribute("download", `dgx-music-${job.id}.wav`);
    showMetadata(job);
    $("result").hidden = false;
    drawWaveform(job).catch((error) => {
      $("waveform").setAttribute("aria-label", `Waveform unavailable: ${error.message}`);
    });
  }

  function formatSeconds(value) {
    return value === null || value === undefined ? "–" : `${value.toFixed(2)} s`;
  }

  function formatNumber(value, digits, unit) {
    return value === null || value === undefined ? "–" : `${value.toFixed(digits)} ${unit}`;
  }

  // A tempo or key the analysis is unsure of is shown as a guess, never as fact.
  function hedged(text, meta, flag) {
    return (meta.flags || []).includes(flag) ? `${text} (uncertain)` : text;
  }

  function showMetadata(job) {
    const meta = job.metadata || {};
    const rows = [
      ["Tempo", hedged(formatNumber(meta.tempo_bpm, 1, "BPM"), meta, "tempo_uncertain"), "tempo"],
      ["Key", hedged(meta.key || "–", meta, "key_uncertain"), "key"],
      ["Loudness", formatNumber(meta.lufs, 1, "LUFS"), "lufs"],
      ["True peak", formatNumber(meta.true_peak_dbtp, 1, "dBTP"), "true-peak"],
      ["Length", formatSeconds(job.audio.duration), "length"],
      ["Seed", job.seed === null ? "–" : String(job.seed), "seed"],
      ["Model", job.model, "model"],
      ["Device", job.device || "–", "device"],
      ["Generation time", formatSeconds(job.generation_seconds), "generation-time"],
    ];
    const list = $("metadata");
    list.replaceChildren();
    for (const [label, value, name] of rows) {
      const group = document.createElement("div");
      const term = document.createElement("dt");
      const description = document.createElement("dd");
      term.textContent = label;
      description.textContent = value;
      description.dataset.field = name;
      group.append(term, description);
      list.append(group);
    }
  }

  async function drawWaveform(job) {
    const canvas = $("waveform");
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(200, Math.round(canvas.clientWidth * ratio)) || 800;
    const height = Math.round(120 * ratio);
    const points = Math.min(4000, Math.max(16, Math.round(width / 2)));
    const wave = await api(`/generations/${job.id}/waveform?points=${points}`);
    canvas.width = width;
    canvas.height = height;
    const context = canvas.getContext("2d");
    const color = getComputedStyle(document.documentElement).getPropertyValue("--wave").trim();
    context.clearRect(0, 0, width, height);
    context.fillStyle = color || "#2458c6";
    const middle = height / 2;
    const column = width / wave.points;
    for (let index = 0; index < wave.points; index += 1) {
      const top = middle - wave.maximum[index] * middle;
      const bottom = middle - wave.minimum[index] * middle;
      context.fillRect(index * column, top, Math.max(1, column - 0.5), Math.max(1, bottom - top));
    }
    canvas.dataset.points = String(wave.points);
    canvas.setAttribute(
      "aria-label",
      `Waveform of the track, ${wave.duration.toFixed(1)} seconds`,
    );
  }

  // --- history ----------------------------------------------------------------------------

  async function refreshHistory() {
    clearTimeout(state.historyTimer);
    let page;
    try {
      page = await api(`/generations?limit=${PAGE_SIZE}&offset=${state.historyOffset}`);
    } catch (error) {
      $("history-message").textContent = `Cannot load the history: ${error.message}`;
      return;
    }
    if (!page.data.length && state.historyOffset > 0) {
      state.historyOffset = Math.max(0, state.historyOffset - PAGE_SIZE);
      refreshHistory();
      return;
    }
    const body = $("history-body");
    body.replaceChildren(...page.data.map(historyRow));
    $("history-message").textContent = page.count ? "" : "No tracks yet.";
    const first = page.count ? state.historyOffset + 1 : 0;
    const last = state.historyOffset + page.data.length;
    $("history-page").textContent = page.count ? `${first}–${last} of ${page.count}` : "";
    $("history-newer").disabled = state.historyOffset === 0;
    $("history-older").disabled = last >= page.count;
    markSelected();
    if (page.data.some((job) => !FINAL.has(job.status))) {
      state.historyTimer = setTimeout(refreshHistory, HISTORY_POLL_MS);
    }
  }

  function historyRow(job) {
    const row = document.createElement("tr");
    row.dataset.id = job.id;

    const prompt = document.createElement("td");
    prompt.className = "prompt-cell";
    prompt.textContent = job.prompt;

    const status = document.createElement("td");
    const badge = document.createElement("span");
    badge.className = `status status-${job.status}`;
    badge.textContent =
      job.status === "processing" ? `processing ${Math.round(job.progress * 100)}%` : job.status;
    status.append(badge);

    const length = document.createElement("td");
    length.textContent = `${job.duration} s`;

    const created = document.createElement("td");
    const time = document.createElement("time");
    time.dateTime = job.created_at;
    time.textContent = new Date(job.created_at).toLocaleString();
    created.append(time);

    const actions = document.createElement("td");
    actions.className = "actions";
    if (job.status === "completed") {
      actions.append(
        actionButton("Play", `Play “${job.prompt}”`, () => playFromHistory(job)),
        actionButton("Extend", `Extend “${job.prompt}”`, () => continueFrom(job)),
        downloadLink(job),
      );
    } else if (!FINAL.has(job.status)) {
      actions.append(actionButton("Follow", `Follow “${job.prompt}”`, () => follow(job)));
    }
    if (job.status !== "processing") {
      const label = job.status === "pending" ? "Cancel" : "Delete";
      const button = actionButton(label, `${label} “${job.prompt}”`, () => remove(job, label));
      button.classList.add("danger");
      actions.append(button);
    }
    row.append(prompt, status, length, created, actions);
    return row;
  }

  function actionButton(text, label, handler) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = text;
    button.setAttribute("aria-label", label);
    button.addEventListener("click", handler);
    return button;
  }

  function downloadLink(job) {
    const link = document.createElement("a");
    link.className = "button-link";
    link.textContent = "Download";
    link.setAttribute("aria-label", `Download “${job.prompt}”`);
    link.href = `${job.audio.url}?download=true`;
    link.setAttribute("download", `dgx-music-${job.id}.wav`);
    link.addEventListener("click", async (event) => {
      if (!Object.keys(authHeaders()).length) {
        return; // a plain link works when no key is needed
      }
      event.preventDefault();
      try {
        const objectUrl = await fetchBlobUrl(job.audio.url);
        const temporary = document.createElement("a");
        temporary.href = objectUrl;
        temporary.download = `dgx-music-${job.id}.wav`;
        temporary.click();
      } catch (error) {
        $("history-message").textContent = `Cannot download: ${error.message}`;
      }
    });
    return link;
  }

  function playFromHistory(job) {
    follow(job);
    $("current").scrollIntoView({ behavior: "smooth", block: "start" });
    $("player").focus();
  }

  async function remove(job, label) {
    const question =
      label === "Cancel"
        ? `Cancel “${job.prompt}”?`
        : `Delete “${job.prompt}” and its file? This cannot be undone.`;
    if (!window.confirm(question)) {
      return;
    }
    try {
      await api(`/generations/${job.id}`, { method: "DELETE" });
      $("history-message").textContent = `${label === "Cancel" ? "Cancelled" : "Deleted"}.`;
      if (job.id === state.currentId && label === "Delete") {
        clearTimeout(state.pollTimer);
        state.currentId = null;
        releaseObjectUrls();
        $("current").hidden = true;
      } else if (job.id === state.currentId) {
        poll();
      }
    } catch (error) {
      if (error.status === 401) {
        showApiError(error);
      }
      $("history-message").textContent = `Cannot ${label.toLowerCase()}: ${error.message}`;
    }
    refreshHistory();
  }

  function markSelected() {
    for (const row of $("history-body").children) {
      row.classList.toggle("selected", row.dataset.id === state.currentId);
    }
  }

  // --- start-up ---------------------------------------------------------------------------

  async function loadServerFacts() {
    try {
      const [info, models] = await Promise.all([api("/info"), api("/models")]);
      $("prompt").maxLength = info.max_prompt_length;
      $("duration").max = String(info.max_duration);
      $("duration-hint").textContent = `Up to ${info.max_duration} seconds.`;
      $("seed").max = String(info.max_seed);
      if (info.auth_required) {
        $("key-settings").open = !$("api-key").value;
      }
      fillModels(models);
      $("server-status").textContent = `Server ${info.version}.`;
    } catch (error) {
      $("server-status").textContent = `Cannot reach the server: ${error.message}`;
    }
  }

  function fillModels(models) {
    const select = $("model");
    select.replaceChildren();
    for (const model of models.data) {
      const option = document.createElement("option");
      option.value = model.name;
      option.textContent = model.available ? model.name : `${model.name} (not installed)`;
      if (model.name.startsWith("twin:")) {
        // Shape twins: the real architecture with random weights, for cost tests only.
        option.textContent = `${model.name} (random weights: noise, for cost tests)`;
      }
      option.disabled = !model.available;
      select.append(option);
    }
    const available = models.data.filter((model) => model.available).map((model) => model.name);
    // The server's default when it is installed, else the fast procedural model.
    const preferred = [models.default_model, "synth", ...available].find((name) =>
      available.includes(name),
    );
    if (preferred) {
      select.value = preferred;
    }
  }

  function start() {
    const storedKey = sessionStorage.getItem(KEY_STORAGE);
    if (storedKey) {
      $("api-key").value = storedKey;
    }
    $("api-key").addEventListener("change", () => {
      sessionStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
      refreshHistory();
    });
    $("generate-form").addEventListener("submit", submit);
    $("prompt").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        $("generate-form").requestSubmit();
      }
    });
    for (const name of FORM_FIELDS) {
      $(name).addEventListener("input", () => {
        $(name).removeAttribute("aria-invalid");
        $(`${name}-error`).hidden = true;
      });
    }
    $("continue-clear").addEventListener("click", startFresh);
    $("refresh-history").addEventListener("click", refreshHistory);
    $("history-newer").addEventListener("click", () => {
      state.historyOffset = Math.max(0, state.historyOffset - PAGE_SIZE);
      refreshHistory();
    });
    $("history-older").addEventListener("click", () => {
      state.historyOffset += PAGE_SIZE;
      refreshHistory();
    });
    loadServerFacts();
    refreshHistory();
  }

  start();
})();
