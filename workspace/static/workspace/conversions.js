// Live conversion state, from the event stream GET /api/v1/events: every conversion of the
// signed-in user, the unfinished ones first on connect, then each change as an event
// `conversion` whose data is the task status JSON plus `item_id`. EventSource reconnects
// by itself (sending Last-Event-ID). Only if the stream cannot be opened at all (no such
// route, a proxy refusing it) does this fall back to polling each known task's status.

import { api } from "./api.js";

export const TERMINAL = new Set(["SUCCESS", "FAILURE", "CANCELLED"]);
export const ACTIVE = new Set(["PENDING", "PROGRESS"]);

const POLL_MS = 1000;
// Failed connection attempts in a row, with no event between, before polling takes over.
const STREAM_ATTEMPTS = 5;

export class ConversionFeed {
  constructor({ apiRoot, onChange }) {
    this.apiRoot = apiRoot;
    this.onChange = onChange;
    this.byTask = new Map();
    this.byItem = new Map();
    this.polled = new Set();
    this.mode = "connecting";
  }

  start() {
    if (!("EventSource" in window)) {
      this.startPolling();
      return;
    }
    let failures = 0;
    const source = new EventSource(`${this.apiRoot}/events`);
    this.source = source;
    source.addEventListener("open", () => {
      this.mode = "stream";
    });
    source.addEventListener("conversion", (event) => {
      failures = 0;
      this.mode = "stream";
      this.record(JSON.parse(event.data));
    });
    source.addEventListener("error", () => {
      failures += 1;
      // CLOSED: the answer was not an event stream (e.g. 404); EventSource gives up.
      if (source.readyState === EventSource.CLOSED || failures >= STREAM_ATTEMPTS) {
        source.close();
        this.startPolling();
      }
    });
  }

  startPolling() {
    if (this.mode === "polling") return;
    this.mode = "polling";
    for (const status of this.byTask.values()) {
      if (ACTIVE.has(status.state)) this.polled.add(status.task_id);
    }
    // What was already running when the page opened.
    for (const state of ACTIVE) {
      api(`${this.apiRoot}/tasks/?state=${state}`)
        .then((page) => page.results.forEach((task) => this.record(task)))
        .catch(() => {});
    }
    this.timer = window.setInterval(() => this.poll(), POLL_MS);
  }

  async poll() {
    for (const taskId of [...this.polled]) {
      try {
        const status = await api(`${this.apiRoot}/tasks/${taskId}/status`);
        const itemId = this.byTask.get(taskId)?.item_id;
        this.record({ item_id: itemId, ...status });
      } catch {
        // Try again at the next tick; a task that disappeared (item deleted) stops.
        if (!this.byTask.has(taskId)) this.polled.delete(taskId);
      }
    }
  }

  // A status from anywhere: the stream, a poll, or an answer of the API. A status never
  // replaces a later one of the same task (a terminal state, or more progress).
  record(status) {
    const known = this.byTask.get(status.task_id);
    if (known && !this.isNewer(status, known)) return;
    const merged = {
      ...known,
      ...status,
      item_id: status.item_id || known?.item_id,
      // eta_seconds counts from when the status was sent: the page counts down from here.
      receivedAt: Date.now(),
    };
    this.byTask.set(merged.task_id, merged);
    if (merged.item_id) this.byItem.set(merged.item_id, merged);
    if (this.mode === "polling") {
      if (ACTIVE.has(merged.state)) this.polled.add(merged.task_id);
      else this.polled.delete(merged.task_id);
    }
    this.onChange(merged, known);
  }

  isNewer(status, known) {
    if (TERMINAL.has(known.state)) return false;
    if (TERMINAL.has(status.state)) return true;
    if (known.state === "PROGRESS" && status.state === "PENDING") return false;
    return (status.progress ?? 0) >= (known.progress ?? 0);
  }

  // A conversion the page itself started: its first status, until the stream's arrives.
  started(itemId, taskId) {
    if (this.byTask.has(taskId)) return;
    this.record({
      task_id: taskId,
      item_id: itemId,
      state: "PENDING",
      status: "Waiting in queue",
      progress: 0,
      eta_seconds: null,
      error: null,
      result: null,
    });
  }

  forItem(itemId) {
    return this.byItem.get(itemId);
  }
}
