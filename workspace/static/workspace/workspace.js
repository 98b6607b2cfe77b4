// The workspace page: the folder tree, uploads, conversions and their results, all through
// the REST API. The address keeps where you are (#folder=<id>&item=<id>), so the browser's
// Back button and a reload return there. Everything shown comes from the API; names and
// messages are set as text, never as HTML.

import { api, apiList, uploadForm } from "./api.js";
import { ACTIVE, ConversionFeed, TERMINAL } from "./conversions.js";
import { showRasterMap } from "./map.js";

const config = JSON.parse(document.getElementById("workspace-config").textContent);
const API = config.api;
const $ = (id) => document.getElementById(id);

const state = {
  folderId: null,
  itemId: null,
  items: [],
  item: null,
  map: null,
  // Tasks this page asked to cancel, until the stream says they stopped.
  cancelling: new Set(),
  detailsTimer: null,
  etaTimer: null,
  // The folder batch this page follows: {id, folderId}, polled until it finishes.
  batch: null,
  batchTimer: null,
};

// ---------------------------------------------------------------------------- messages

function showError(error) {
  $("alert-text").textContent = error?.message || String(error);
  $("alert").hidden = false;
}

function clearError() {
  $("alert").hidden = true;
  $("alert-text").textContent = "";
}

function notify(text) {
  $("notice").textContent = text;
}

$("alert-dismiss").addEventListener("click", clearError);

// ---------------------------------------------------------------------------- formatting

function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 || value >= 100 ? 0 : 1)} ${units[unit]}`;
}

function formatDuration(seconds) {
  const s = Math.max(1, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const minutes = Math.floor(s / 60);
  if (minutes < 60) return `${minutes} min ${s % 60} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function formatNumber(value) {
  if (value === null || value === undefined) return "—";
  if (Number.isInteger(value)) return value.toLocaleString("en");
  return Number(value).toLocaleString("en", { maximumFractionDigits: 4 });
}

const TYPE_LABELS = { folder: "Folder", file: "File", geo_raster_file: "Geo-raster (COG)" };
const STATE_LABELS = {
  PENDING: "Queued",
  PROGRESS: "Converting",
  SUCCESS: "Converted",
  FAILURE: "Failed",
  CANCELLED: "Cancelled",
};

function conversionSummary(item) {
  if (item.object_type === "geo_raster_file") return "Converted";
  if (item.object_type === "folder") return "";
  const status = feed.forItem(item.id);
  if (!status) return "Not converted";
  if (status.state === "PROGRESS") return `Converting, ${status.progress}%`;
  return STATE_LABELS[status.state] || status.state;
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "text") node.textContent = value;
    else if (key === "className") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

// ---------------------------------------------------------------------------- navigation

function readLocation() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  return { folderId: params.get("folder"), itemId: params.get("item") };
}

function go({ folderId = state.folderId, itemId = null } = {}) {
  const params = new URLSearchParams();
  if (folderId) params.set("folder", folderId);
  if (itemId) params.set("item", itemId);
  const hash = params.toString() ? `#${params}` : "";
  // An empty fragment still leaves "#" in the address, but keeps one way of moving: every
  // move is a hashchange, so Back and Forward go through route() as clicks do.
  if (hash === window.location.hash || (!hash && !window.location.hash.slice(1))) route();
  else window.location.hash = hash;
}

async function route() {
  const { folderId, itemId } = readLocation();
  const folderChanged = folderId !== state.folderId || !state.loaded;
  clearError();
  state.folderId = folderId;
  state.itemId = itemId;
  try {
    if (folderChanged) await loadFolder();
    await loadDetails();
  } catch (error) {
    showError(error);
  }
}

window.addEventListener("hashchange", route);

// ---------------------------------------------------------------------------- the tree

async function loadFolder() {
  state.loaded = true;
  const query = state.folderId ? `parent=${encodeURIComponent(state.folderId)}` : "top_level=true";
  let ancestors = [];
  try {
    const [items, trail] = await Promise.all([
      apiList(`${API}/tree-items/?${query}`),
      breadcrumbTrail(state.folderId),
    ]);
    state.items = items;
    ancestors = trail;
  } catch (error) {
    state.items = [];
    renderItems();
    renderBreadcrumbs([]);
    throw error;
  }
  renderBreadcrumbs(ancestors);
  renderItems();
  $("convert-folder-button").hidden = !state.folderId;
  $("batch").hidden = !state.batch || state.batch.folderId !== state.folderId;
}

// The folder and its ancestors, top first.
async function breadcrumbTrail(folderId) {
  const trail = [];
  let id = folderId;
  while (id && trail.length < 100) {
    const folder = await api(`${API}/tree-items/${id}`);
    trail.unshift(folder);
    id = folder.parent;
  }
  return trail;
}

function renderBreadcrumbs(trail) {
  const list = $("breadcrumbs");
  list.replaceChildren();
  const crumbs = [{ id: null, name: "Home" }, ...trail];
  crumbs.forEach((crumb, index) => {
    const last = index === crumbs.length - 1;
    const node = last
      ? el("span", { "aria-current": "page", text: crumb.name })
      : el("a", { href: crumb.id ? `#folder=${crumb.id}` : "#", text: crumb.name });
    list.append(el("li", {}, node));
  });
  const here = crumbs[crumbs.length - 1].name;
  $("folder-caption").textContent = `Items in ${here}`;
}

function sortedItems() {
  const folderFirst = (item) => (item.object_type === "folder" ? 0 : 1);
  return [...state.items].sort(
    (a, b) => folderFirst(a) - folderFirst(b) || a.name.localeCompare(b.name),
  );
}

function renderItems() {
  const body = $("items");
  body.replaceChildren(...sortedItems().map(itemRow));
  $("empty-folder").hidden = state.items.length > 0;
}

function itemRow(item) {
  const isFolder = item.object_type === "folder";
  const open = el("a", {
    href: isFolder ? `#folder=${item.id}` : `#${folderParam()}item=${item.id}`,
    className: `item-link ${item.object_type}`,
    text: item.name,
  });
  if (!isFolder && item.id === state.itemId) open.setAttribute("aria-current", "true");
  const row = el(
    "tr",
    { "data-item-id": item.id },
    el("td", { className: "name" }, el("span", { className: "icon", "aria-hidden": "true" }), open),
    el("td", { text: TYPE_LABELS[item.object_type] || item.object_type }),
    el("td", { className: "num", text: isFolder ? "" : formatBytes(item.size) }),
    el("td", { className: "conversion-cell", text: conversionSummary(item) }),
    el(
      "td",
      { className: "row-actions" },
      el("button", {
        type: "button",
        text: "Rename",
        "aria-label": `Rename ${item.name}`,
        onclick: () => startRename(item, row),
      }),
      el("button", {
        type: "button",
        className: "danger",
        text: "Delete",
        "aria-label": `Delete ${item.name}`,
        onclick: () => deleteItem(item),
      }),
    ),
  );
  if (item.id === state.itemId) row.classList.add("selected");
  return row;
}

function folderParam() {
  return state.folderId ? `folder=${state.folderId}&` : "";
}

function startRename(item, row) {
  const cell = row.querySelector("td.name");
  const previous = [...cell.childNodes];
  const inputId = `rename-${item.id}`;
  const input = el("input", { id: inputId, value: item.name, maxlength: "1024", required: "" });
  const restore = () => {
    cell.replaceChildren(...previous);
    row.querySelector(".row-actions button").focus();
  };
  const form = el(
    "form",
    { className: "rename-form" },
    el("label", { for: inputId, className: "visually-hidden", text: `New name for ${item.name}` }),
    input,
    el("button", { type: "submit", text: "Save" }),
    el("button", { type: "button", text: "Cancel", onclick: restore }),
  );
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape") restore();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = input.value;
    if (!name.trim()) {
      showError(new Error("A name cannot be empty."));
      return;
    }
    try {
      const updated = await api(`${API}/tree-items/${item.id}`, { method: "PATCH", json: { name } });
      clearError();
      replaceItem(updated);
      notify(`Renamed to ${updated.name}.`);
      if (updated.id === state.itemId) renderDetails(updated);
      $("items").querySelector(`tr[data-item-id="${updated.id}"] .row-actions button`)?.focus();
    } catch (error) {
      showError(error);
    }
  });
  cell.replaceChildren(form);
  input.focus();
  input.select();
}

async function deleteItem(item) {
  const what = item.object_type === "folder" ? `the folder "${item.name}" and everything in it` : `"${item.name}"`;
  if (!window.confirm(`Delete ${what}? This cannot be undone.`)) return;
  try {
    await api(`${API}/tree-items/${item.id}`, { method: "DELETE" });
    clearError();
    state.items = state.items.filter((other) => other.id !== item.id);
    renderItems();
    notify(`Deleted ${item.name}.`);
    $("new-folder-name").focus();
    if (item.id === state.itemId) go({ itemId: null });
  } catch (error) {
    showError(error);
  }
}

function replaceItem(updated) {
  const index = state.items.findIndex((item) => item.id === updated.id);
  if (index >= 0) state.items[index] = updated;
  renderItems();
}

$("new-folder-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("new-folder-name");
  const name = input.value;
  if (!name.trim()) {
    showError(new Error("Give the folder a name."));
    return;
  }
  try {
    const json = { name, ...(state.folderId ? { parent: state.folderId } : {}) };
    const folder = await api(`${API}/tree-items/`, { method: "POST", json });
    clearError();
    input.value = "";
    state.items.push(folder);
    renderItems();
    notify(`Created the folder ${folder.name}.`);
  } catch (error) {
    showError(error);
  }
});

$("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("upload-file");
  const file = input.files[0];
  if (!file) {
    showError(new Error("Choose a file to upload first."));
    return;
  }
  if (file.size > config.maxUploadBytes) {
    showError(new Error(`${file.name} is ${formatBytes(file.size)}; the largest upload accepted is ${formatBytes(config.maxUploadBytes)}.`));
    return;
  }
  const form = new FormData();
  form.append("name", file.name);
  if (state.folderId) form.append("parent", state.folderId);
  form.append("file", file);
  const bar = $("upload-bar");
  const status = $("upload-status");
  const submit = event.target.querySelector("button");
  $("upload-progress").hidden = false;
  bar.value = 0;
  status.textContent = `Uploading ${file.name}…`;
  submit.disabled = true;
  try {
    const item = await uploadForm(`${API}/tree-items/`, form, (fraction) => {
      bar.value = Math.round(fraction * 100);
      status.textContent = `Uploading ${file.name}: ${bar.value}%`;
    });
    clearError();
    bar.value = 100;
    status.textContent = `Uploaded ${item.name}.`;
    input.value = "";
    state.items.push(item);
    renderItems();
    go({ itemId: item.id });
  } catch (error) {
    status.textContent = `The upload of ${file.name} failed.`;
    showError(error);
  } finally {
    submit.disabled = false;
  }
});

// ---------------------------------------------------------------------------- details

async function loadDetails() {
  window.clearTimeout(state.detailsTimer);
  if (!state.itemId) {
    closeDetails();
    return;
  }
  let item;
  try {
    item = await api(`${API}/tree-items/${state.itemId}`);
  } catch (error) {
    closeDetails();
    throw error;
  }
  if (item.object_type === "file" && !feed.forItem(item.id)) {
    // The latest conversion of an item the stream has not mentioned (a finished one).
    const latest = await api(`${API}/tree-items/${item.id}/conversion-status`);
    if (latest.task_id) {
      const status = await api(`${API}/tasks/${latest.task_id}/status`);
      feed.record({ ...status, item_id: item.id });
    }
  }
  renderDetails(item);
  document.querySelectorAll("#items tr").forEach((row) => {
    row.classList.toggle("selected", row.dataset.itemId === item.id);
  });
}

function closeDetails() {
  state.item = null;
  removeMap();
  $("details").hidden = true;
}

function renderDetails(item) {
  const changedItem = state.item?.id !== item.id;
  const becameRaster = state.item?.object_type !== item.object_type;
  state.item = item;
  $("details").hidden = item.object_type === "folder";
  if (item.object_type === "folder") return;
  $("details-heading").textContent = item.name;
  fillFacts($("item-facts"), [
    ["Type", TYPE_LABELS[item.object_type]],
    ["Size", formatBytes(item.size)],
    ["Uploaded", new Date(item.created_at).toLocaleString("en")],
  ]);
  renderConversion();
  const isRaster = item.object_type === "geo_raster_file";
  $("result-section").hidden = !isRaster;
  if (isRaster && (changedItem || becameRaster || !state.map)) renderResult(item);
  else if (isRaster) renderDescription(item);
  if (!isRaster) removeMap();
}

function renderConversion() {
  const item = state.item;
  if (!item || item.object_type === "folder") return;
  const focused = document.activeElement;
  renderConversionState(item);
  // A button that was just used may have gone (Convert, Cancel): keep the focus nearby.
  if ($("details").contains(focused) && focused.offsetParent === null) {
    const next = [$("cancel-button"), $("retry-button")].find((b) => b.offsetParent !== null);
    (next || $("conversion-heading")).focus();
  }
}

function renderConversionState(item) {
  const status = feed.forItem(item.id);
  const converted = item.object_type === "geo_raster_file";
  const active = status && ACTIVE.has(status.state);
  const stopped = status && (status.state === "FAILURE" || status.state === "CANCELLED");
  $("convert-section").hidden = converted || Boolean(status);
  $("convert-button").disabled = Boolean(active);
  const section = $("conversion");
  section.hidden = !status;
  if (!status) return;
  const cancelling = state.cancelling.has(status.task_id) && active;
  $("conversion-state").textContent = cancelling
    ? "Cancelling"
    : STATE_LABELS[status.state] || status.state;
  $("conversion-state").dataset.state = status.state;
  const progress = converted ? 100 : status.progress ?? 0;
  $("conversion-bar").value = progress;
  $("conversion-percent").textContent = `${progress}%`;
  $("conversion-stage").textContent = cancelling
    ? `Cancellation requested; ${status.status}`
    : status.status || "";
  renderEta();
  const error = $("conversion-error");
  error.hidden = status.state !== "FAILURE";
  error.textContent = status.state === "FAILURE" ? status.error || "The conversion failed." : "";
  $("cancel-button").hidden = !active;
  // aria-disabled, not disabled: a disabled button would drop the keyboard focus.
  $("cancel-button").setAttribute("aria-disabled", String(cancelling));
  $("retry-button").hidden = !stopped;
  // After a stop, the options stay editable for the retry.
  if (stopped) $("convert-section").hidden = false;
  $("convert-button").hidden = Boolean(stopped);
}

// The time left, counted down between events (the stream sends one per change only).
function renderEta() {
  window.clearTimeout(state.etaTimer);
  const status = state.item && feed.forItem(state.item.id);
  let text = "";
  if (status?.state === "PROGRESS" && !state.cancelling.has(status.task_id)) {
    if (status.eta_seconds === null || status.eta_seconds === undefined) {
      text = "Estimating the time left…";
    } else {
      const left = status.eta_seconds - (Date.now() - status.receivedAt) / 1000;
      text = left >= 1 ? `About ${formatDuration(left)} left` : "Almost done…";
      state.etaTimer = window.setTimeout(renderEta, 1000);
    }
  }
  $("conversion-eta").textContent = text;
}

function conversionOptions() {
  const targetCrs = $("target-crs").value.trim();
  const crs = $("georef-crs").value.trim();
  const boundIds = ["bound-west", "bound-south", "bound-east", "bound-north"];
  const boundValues = boundIds.map((id) => $(id).value.trim());
  const options = {};
  if (targetCrs) options.target_crs = targetCrs;
  if (crs || boundValues.some(Boolean)) {
    if (!crs || !boundValues.every(Boolean)) {
      throw new Error("To georeference a raster, give its CRS and all four bounds (west, south, east, north).");
    }
    options.crs = crs;
    options.bounds = boundValues.map(Number);
  }
  return options;
}

async function convert() {
  const item = state.item;
  let options;
  try {
    options = conversionOptions();
  } catch (error) {
    showError(error);
    return;
  }
  try {
    const accepted = await api(`${API}/tree-items/${item.id}/convert-to-geo-raster`, {
      method: "POST",
      json: options,
    });
    clearError();
    feed.started(item.id, accepted.task_id);
    notify(`Conversion of ${item.name} started.`);
    renderConversion();
  } catch (error) {
    showError(error);
  }
}

$("convert-form").addEventListener("submit", (event) => {
  event.preventDefault();
  convert();
});
$("retry-button").addEventListener("click", convert);

$("cancel-button").addEventListener("click", async () => {
  const status = feed.forItem(state.item.id);
  if (!status || state.cancelling.has(status.task_id)) return;
  try {
    await api(`${API}/tasks/${status.task_id}/cancel`, { method: "POST" });
    clearError();
    state.cancelling.add(status.task_id);
    notify("Cancellation requested.");
    renderConversion();
  } catch (error) {
    showError(error);
  }
});

// ---------------------------------------------------------------------------- results

function fillFacts(list, rows) {
  list.replaceChildren();
  for (const [term, value] of rows) {
    if (value === undefined || value === null || value === "") continue;
    list.append(el("dt", { text: term }), el("dd", { text: String(value) }));
  }
}

function removeMap() {
  if (state.map) {
    state.map.remove();
    state.map = null;
  }
}

async function renderResult(item) {
  const base = `${API}/tree-items/${item.id}`;
  $("download-original").href = `${base}/download?variant=original`;
  $("download-cog").href = `${base}/download?variant=geo_raster`;
  $("link-row").hidden = true;
  renderDescription(item);
  removeMap();
  try {
    const tilejson = await api(`${base}/tilejson.json`);
    if (state.item?.id !== item.id) return;
    removeMap();
    state.map = showRasterMap($("map"), tilejson, {
      basemapUrl: config.basemapUrl,
      basemapAttribution: config.basemapAttribution,
    });
  } catch (error) {
    showError(error);
  }
}

function renderDescription(item) {
  const raster = item.geo_raster;
  const [west, south, east, north] = raster.bounds_wgs84 || [];
  fillFacts($("metadata"), [
    ["CRS", raster.crs],
    ["Size", `${raster.width} × ${raster.height} px, ${raster.count} band${raster.count === 1 ? "" : "s"}`],
    ["Data types", (raster.dtypes || []).join(", ")],
    ["No data", raster.nodata],
    ["Resolution", raster.resolution && raster.resolution.map(formatNumber).join(" × ")],
    ["Bounds", raster.bounds && raster.bounds.map(formatNumber).join(", ")],
    ["Bounds (WGS 84)", raster.bounds_wgs84 && `W ${formatNumber(west)}, S ${formatNumber(south)}, E ${formatNumber(east)}, N ${formatNumber(north)}`],
    ["Overviews", (raster.overviews || []).join(", ") || "none"],
    ["Compression", raster.compression],
    ["COG size", formatBytes(raster.size_bytes)],
    ["SHA-256", raster.sha256],
  ]);
  const stats = raster.statistics;
  $("statistics-pending").hidden = Boolean(stats);
  $("statistics").hidden = !stats;
  const image = $("thumbnail");
  if (stats) {
    $("statistics").tBodies[0].replaceChildren(
      ...stats.bands.map((band) =>
        el(
          "tr",
          {},
          el("th", { scope: "row", text: String(band.band) }),
          el("td", { text: band.dtype }),
          ...["valid_pixels", "min", "max", "mean", "std", "percentile_2", "percentile_98"].map(
            (key) => el("td", { className: "num", text: formatNumber(band[key]) }),
          ),
        ),
      ),
    );
    const src = `${API}/tree-items/${item.id}/thumbnail.png?v=${raster.sha256.slice(0, 12)}`;
    if (image.getAttribute("src") !== src) {
      image.alt = `Preview of ${item.name}`;
      image.src = src;
    }
    image.hidden = false;
    $("thumbnail-caption").textContent = "";
  } else {
    image.hidden = true;
    image.removeAttribute("src");
    $("thumbnail-caption").textContent = "The preview is being made…";
    // Statistics and the preview come from a follow-up task, seconds after the conversion.
    window.clearTimeout(state.detailsTimer);
    state.detailsTimer = window.setTimeout(refreshItem, 2000, item.id);
  }
}

$("thumbnail").addEventListener("error", () => {
  $("thumbnail").hidden = true;
  $("thumbnail-caption").textContent = "The preview could not be loaded.";
});

async function refreshItem(itemId) {
  const listed = state.items.some((item) => item.id === itemId);
  if (!listed && state.item?.id !== itemId) return;
  try {
    const item = await api(`${API}/tree-items/${itemId}`);
    replaceItem(item);
    if (state.item?.id === itemId) renderDetails(item);
  } catch (error) {
    showError(error);
  }
}

$("link-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const variant = $("link-variant").value;
  try {
    const link = await api(`${API}/tree-items/${state.item.id}/download-link`, {
      method: "POST",
      json: { variant },
    });
    clearError();
    const output = $("link-output");
    output.value = link.url;
    $("link-expiry").textContent = `(valid until ${new Date(link.expires_at).toLocaleString("en")})`;
    $("link-row").hidden = false;
    try {
      await navigator.clipboard.writeText(link.url);
      notify("The signed link is copied to the clipboard.");
    } catch {
      output.focus();
      output.select();
      notify("The signed link is in the box below: copy it from there.");
    }
  } catch (error) {
    showError(error);
  }
});

// ---------------------------------------------------------------------------- live state

function onConversion(status, previous) {
  const row = $("items").querySelector(`tr[data-item-id="${status.item_id}"]`);
  const item = state.items.find((candidate) => candidate.id === status.item_id);
  if (row && item) row.querySelector(".conversion-cell").textContent = conversionSummary(item);
  if (TERMINAL.has(status.state)) state.cancelling.delete(status.task_id);
  if (state.item?.id === status.item_id) renderConversion();
  const finished = status.state === "SUCCESS" && previous?.state !== "SUCCESS";
  if (finished && (item || state.item?.id === status.item_id)) refreshItem(status.item_id);
}

const feed = new ConversionFeed({ apiRoot: API, onChange: onConversion });
feed.start();
// For the browser tests and anyone curious: which transport feeds the bar.
window.tagger = { feed };
route();

// ---------------------------------------------------------------------------- folder batches

const BATCH_POLL_MS = 1000;

$("convert-folder-button").addEventListener("click", async () => {
  const folderId = state.folderId;
  try {
    const accepted = await api(`${API}/tree-items/${folderId}/convert-to-geo-raster`, {
      method: "POST",
      json: {},
    });
    clearError();
    const skipped = accepted.skipped ? ` (${accepted.skipped} converted or converting already)` : "";
    const files = accepted.total === 1 ? "1 file" : `${accepted.total} files`;
    notify(`Converting ${files} of this folder${skipped}.`);
    followBatch(accepted.batch_id, folderId);
  } catch (error) {
    showError(error);
  }
});

$("batch-cancel").addEventListener("click", async () => {
  if (!state.batch) return;
  try {
    renderBatch(await api(`${API}/batches/${state.batch.id}/cancel`, { method: "POST" }));
    clearError();
    notify("The folder's conversion was cancelled.");
  } catch (error) {
    showError(error);
  }
});

function followBatch(batchId, folderId) {
  window.clearTimeout(state.batchTimer);
  state.batch = { id: batchId, folderId };
  pollBatch();
}

async function pollBatch() {
  const batch = state.batch;
  if (!batch) return;
  try {
    const body = await api(`${API}/batches/${batch.id}`);
    if (state.batch !== batch) return;
    renderBatch(body);
    if (body.state === "COMPLETED" || body.state === "CANCELLED") {
      if (state.folderId === batch.folderId) await loadFolder();
      return;
    }
  } catch (error) {
    showError(error);
  }
  state.batchTimer = window.setTimeout(pollBatch, BATCH_POLL_MS);
}

function renderBatch(body) {
  const finished = body.state === "COMPLETED" || body.state === "CANCELLED";
  $("batch").hidden = state.folderId !== state.batch?.folderId;
  $("batch-bar").value = body.progress;
  const c = body.counts;
  const done = c.SUCCESS + c.FAILURE + c.CANCELLED;
  const parts = [`${c.SUCCESS} converted`];
  if (c.FAILURE) parts.push(`${c.FAILURE} failed`);
  if (c.CANCELLED) parts.push(`${c.CANCELLED} cancelled`);
  const head = finished
    ? body.state === "CANCELLED" ? "Cancelled" : "Done"
    : `${done} of ${body.total} files`;
  $("batch-text").textContent = `${head}: ${parts.join(", ")}.`;
  $("batch-cancel").hidden = finished;
}
