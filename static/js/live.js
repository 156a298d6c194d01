// Shared by CloudSeam's page modules: a WebSocket that reconnects with backoff and drives the
// connection indicator, the screen-reader announcer, building DOM without innerHTML, relative
// times, and sending a page's POST forms with fetch (the forms also work without JavaScript).

/** Create an element. `props`: class, text, dataset, attributes; children: nodes or strings. */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

/** Say something to screen-reader users through the page's polite live region. */
export function announce(text) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  // A new text node after a tick makes screen readers repeat an identical message.
  window.setTimeout(() => { region.textContent = text; }, 50);
}

/** Milliseconds since the epoch from an ISO string, or null. */
export function timeOf(iso) {
  const value = iso ? Date.parse(iso) : NaN;
  return Number.isNaN(value) ? null : value;
}

const UNITS = [
  ["year", 365 * 24 * 3600], ["month", 30 * 24 * 3600], ["day", 24 * 3600],
  ["hour", 3600], ["minute", 60], ["second", 1],
];

/** "5 minutes ago", "just now". */
export function relativeTime(iso, now = Date.now()) {
  const at = timeOf(iso);
  if (at === null) return "";
  const seconds = Math.round((now - at) / 1000);
  if (seconds < 5) return "just now";
  for (const [unit, size] of UNITS) {
    if (seconds >= size) {
      const count = Math.floor(seconds / size);
      return `${count} ${unit}${count === 1 ? "" : "s"} ago`;
    }
  }
  return "just now";
}

/** Set a <time data-relative> element to an ISO moment. */
export function setTime(node, iso) {
  node.dateTime = iso || "";
  node.textContent = relativeTime(iso);
  node.title = iso ? new Date(iso).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC").replace("Z", " UTC") : "";
  node.tabIndex = 0; // the exact time (title) on focus as on hover
}

/** Keep every <time data-relative> of the page current. */
export function tickRelativeTimes(root = document, every = 15000) {
  const update = () => {
    for (const node of root.querySelectorAll("time[data-relative]")) {
      if (node.dateTime) node.textContent = relativeTime(node.dateTime);
    }
  };
  update();
  return window.setInterval(update, every);
}

/** Call `fn` at most once per `wait` ms, at the end of a burst. */
export function debounce(fn, wait) {
  let timer = null;
  const debounced = (...args) => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => { timer = null; fn(...args); }, wait);
  };
  debounced.now = (...args) => { window.clearTimeout(timer); timer = null; fn(...args); };
  return debounced;
}

/** The CSRF token Django put in the page (any form's hidden input), for fetch requests. */
export function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  if (input) return input.value;
  const cookie = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
  return cookie ? decodeURIComponent(cookie.split("=")[1]) : "";
}

/**
 * Send a POST form with fetch and get `{ok, message, error, stack}` back. The view answers JSON
 * when asked (Accept: application/json); anything else is turned into a readable error.
 */
export async function submitForm(form) {
  const button = form.querySelector("button[type=submit], button:not([type])");
  button?.setAttribute("aria-busy", "true");
  if (button) button.disabled = true;
  try {
    const response = await fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    if (response.redirected && response.url.includes("/accounts/login/")) {
      return { ok: false, error: "Your session has ended: reload the page and log in again." };
    }
    if (response.status === 403) {
      return { ok: false, error: "Your role cannot do this (403)." };
    }
    try {
      return await response.json();
    } catch {
      return { ok: false, error: `The server answered ${response.status} ${response.statusText}; nothing was shown.` };
    }
  } catch {
    return { ok: false, error: "The server could not be reached; check the connection and try again." };
  } finally {
    button?.removeAttribute("aria-busy");
    if (button) button.disabled = false;
  }
}

/** A stack id can be used again after removal; its record number tells the two apart. */
const seqKey = (stack) => `${stack.id}#${stack.record}`;

const LABELS = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  offline: "Offline",
};

/**
 * A WebSocket to one of the /ws/ endpoints that comes back by itself: after a drop it waits 1 s,
 * 2 s, 4 s … (at most 30 s, with jitter so a restarted server is not hit by every page at once),
 * and each connection starts with a full snapshot, which `onMessage` treats as the truth.
 * Stack snapshots carry `seq`, one more per change: a frame older than what the page has is
 * dropped, and one that skips a number (a frame was lost) makes the socket ask for a new snapshot.
 */
export class LiveSocket {
  constructor(path, onMessage, indicator = document.getElementById("connection")) {
    this.path = path;
    this.onMessage = onMessage;
    this.indicator = indicator;
    this.attempt = 0;
    this.timer = null;
    this.countdown = null;
    this.socket = null;
    this.wasLive = false;
    this.state = "connecting";
    this.seqs = new Map();
  }

  /** False for a stale frame; asks for a snapshot (and still applies the frame) on a gap. */
  inOrder(message) {
    if (message.type === "snapshot") {
      this.seqs.clear();
      for (const stack of message.stacks || (message.stack ? [message.stack] : [])) this.seqs.set(seqKey(stack), stack.seq);
      return true;
    }
    const stack = message.stack;
    if (!stack || typeof stack !== "object" || typeof stack.seq !== "number") return true;
    const last = this.seqs.get(seqKey(stack));
    if (last !== undefined && stack.seq <= last) return false;
    this.seqs.set(seqKey(stack), stack.seq);
    if (last !== undefined && stack.seq > last + 1) this.resync();
    return true;
  }

  resync() {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify({ type: "resync" }));
    else this.retryNow();
  }

  start() {
    window.addEventListener("online", () => this.retryNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && this.state !== "live") this.retryNow();
    });
    this.connect();
    return this;
  }

  url() {
    const url = new URL(this.path, window.location.href);
    url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
    return url.toString();
  }

  connect() {
    this.clearTimers();
    this.show(this.wasLive ? "reconnecting" : "connecting");
    let socket;
    try {
      socket = new WebSocket(this.url());
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.attempt = 0;
      if (this.wasLive) announce("Live updates are back.");
      this.wasLive = true;
      this.show("live");
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (this.inOrder(message)) this.onMessage(message);
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.state === "live") announce("Live updates were interrupted; reconnecting.");
      this.scheduleReconnect(event.code);
    });
  }

  scheduleReconnect(code) {
    const base = Math.min(30000, 1000 * 2 ** this.attempt);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.attempt += 1;
    const until = Date.now() + delay;
    const refused = code === 4401 || code === 4403;
    const render = () => {
      const seconds = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      const why = refused ? "Not signed in" : "Disconnected";
      this.show(this.attempt > 4 ? "offline" : "reconnecting", `${why}; retrying in ${seconds} s`);
    };
    render();
    this.countdown = window.setInterval(render, 1000);
    this.timer = window.setTimeout(() => this.connect(), delay);
  }

  retryNow() {
    if (this.socket) return;
    this.attempt = 0;
    this.connect();
  }

  clearTimers() {
    window.clearTimeout(this.timer);
    window.clearInterval(this.countdown);
    this.timer = this.countdown = null;
  }

  show(state, detail) {
    this.state = state;
    if (!this.indicator) return;
    this.indicator.dataset.state = state;
    const label = this.indicator.querySelector(".connection-label");
    if (label) label.textContent = detail || LABELS[state];
    let retry = this.indicator.querySelector("button");
    if ((state === "reconnecting" || state === "offline") && !retry) {
      retry = h("button", { type: "button", class: "link-button", text: "Retry now" });
      retry.addEventListener("click", () => this.retryNow());
      this.indicator.append(retry);
    } else if (state === "live" || state === "connecting") {
      retry?.remove();
    }
  }
}
