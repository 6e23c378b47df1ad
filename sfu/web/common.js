// Small helpers shared by the pages: DOM building, tokens, the HTTP API, plain-words messages.
// Names and other text are always set with textContent, never parsed as HTML.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

// Show exactly one of the page's screens (elements with class "screen").
export function showScreen(id) {
  for (const screen of document.querySelectorAll(".screen")) {
    screen.hidden = screen.id !== id;
  }
}

// The clinic (and room) come from the page's own address: /c/{clinic}[/dashboard|/rooms/{room}].
export function pathParts() {
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  return { clinic: parts[1] || "", room: parts[2] === "rooms" ? parts[3] || "" : "" };
}

// The tab's sessionStorage (a token and the wait's start survive a reload), or a stand-in in
// memory where the browser refuses storage: in a portal's iframe from another site Chromium
// throws SecurityError on any use of it (third-party storage blocked). Then a reload of the
// frame alone starts over; the portal's page, reloaded, hands the fragment token over again.
function pageStorage() {
  try {
    const storage = window.sessionStorage;
    storage.setItem("sfu.probe", "1");
    storage.removeItem("sfu.probe");
    return storage;
  } catch (error) {
    console.info(`sessionStorage unavailable (${error.name}): kept in memory for this page`);
    const memory = new Map();
    return {
      getItem: (key) => (memory.has(key) ? memory.get(key) : null),
      setItem: (key, value) => { memory.set(key, String(value)); },
      removeItem: (key) => { memory.delete(key); },
    };
  }
}

export const storage = pageStorage();

// A token handed over in the URL fragment (#token=...). It is moved to storage and taken
// out of the address bar, so that it is not shared by copying the address or left in history.
export function takeFragmentToken(storageKey) {
  const params = new URLSearchParams(location.hash.slice(1));
  const fromHash = params.get("token");
  if (fromHash) {
    storage.setItem(storageKey, fromHash);
    history.replaceState(null, "", location.pathname + location.search);
    return fromHash;
  }
  return storage.getItem(storageKey);
}

// The claims of a JWT, without verifying it (the server does that). null when unreadable.
export function decodeClaims(token) {
  try {
    const part = token.split(".")[1];
    const base64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

export function tokenExpired(claims) {
  return typeof claims.exp === "number" && claims.exp * 1000 <= Date.now();
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// Call the HTTP API; resolves to the parsed JSON (or null for 204), rejects with ApiError.
export async function api(method, path, { token, body } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "omit",
    });
  } catch {
    throw new ApiError(0, "network", "The server could not be reached. Check your internet connection.");
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || "http_" + response.status,
                       error.message || `The server answered ${response.status}.`);
  }
  return data;
}

// What a refusal means, in plain words. `message` is the server's own text, used where it adds
// something the person can act on (a closed waiting area's notice, a bandwidth figure).
export function explain(code, message = "", place = "this call") {
  switch (code) {
    case "forbidden":
      return `Your link does not let you into ${place}. Please check that you opened the link the clinic gave you.`;
    case "unauthorized":
      return "Your link is not valid or has expired. Please ask the clinic for a new one.";
    case "not_found":
      return `${capitalize(place)} has ended or no longer exists.`;
    case "room_full":
      return `${capitalize(place)} is full: the most people allowed are already in it. Please try again later.`;
    case "insufficient_bandwidth":
      return "Your internet connection is too slow for a video call right now. "
        + "Try moving closer to your Wi-Fi router or closing other apps, then try again.";
    case "draining":
      return "The video service is restarting for maintenance. Please try again in a minute.";
    case "rate_limited":
      return "Too many attempts from this network. Please wait a minute and try again.";
    case "conflict":
      return message || "The clinic's waiting area is closed right now.";
    case "media_failed":
      return "The video connection was lost. Please check your internet connection and reload the page.";
    case "too_many_redirects":
    case "bad_redirect":
      return "The video service could not find where this call is running. Please reload the page in a minute.";
    case "network":
      return "The server could not be reached. Check your internet connection and try again.";
    case "bad_request":
      return message || "Something in the request was not right.";
    default:
      return message || "Something went wrong. Please reload the page and try again.";
  }
}

// Camera and microphone errors (getUserMedia) in plain words.
export function explainMediaError(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      if (framedWithoutMedia()) {
        return "This call is shown inside another website that does not let it use your camera "
          + "and microphone. Please tell the clinic. Until then the others cannot see or hear you.";
      }
      return "Your browser is blocking the camera and microphone. Allow them for this site "
        + "(look for the camera icon in the address bar) and reload the page. "
        + "Until then the others cannot see or hear you.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No camera or microphone was found. Plug one in and reload the page. "
        + "You can still see and hear the others.";
    case "NotReadableError":
    case "AbortError":
      return "Your camera or microphone is in use by another app. Close that app and reload the page.";
    default:
      return "The camera and microphone could not be started. You can still see and hear the others.";
  }
}

// Shown in another site's iframe that does not allow the camera or the microphone (no
// allow="camera; microphone"): the browser refuses them whatever the person chooses.
function framedWithoutMedia() {
  if (window.top === window) return false;
  const policy = document.permissionsPolicy || document.featurePolicy;
  if (!policy || typeof policy.allowsFeature !== "function") return false;
  return !policy.allowsFeature("camera") || !policy.allowsFeature("microphone");
}

function capitalize(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// "4:05" or "1:02:03" for a number of seconds.
export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

// Ask for camera and microphone; falls back to whichever of the two works.
// Resolves to { stream, error }: stream may be null, error is the first failure (if any).
export async function getLocalMedia() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return { stream: null, error: { name: "NotSupportedError" } };
  }
  const video = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 20, max: 30 } };
  const attempts = [{ audio: true, video }, { audio: true, video: false }, { audio: false, video }];
  let firstError = null;
  for (const constraints of attempts) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia(constraints);
      return { stream, error: firstError };
    } catch (error) {
      firstError = firstError || error;
      if (error.name === "NotAllowedError" || error.name === "SecurityError") break;
    }
  }
  return { stream: null, error: firstError };
}

// A muted, mirrored self-view video for a local stream.
export function attachSelfView(video, stream) {
  video.muted = true;
  video.autoplay = true;
  video.playsInline = true;
  video.srcObject = stream;
  video.play().catch(() => {});
}

// A banner for messages: kind is "info", "warn" or "error"; empty text hides it.
export function setBanner(node, text, kind = "info") {
  node.textContent = text || "";
  node.className = `banner banner-${kind}`;
  node.hidden = !text;
}

// Mute/unmute buttons for a local stream's microphone and camera (tracks stay published).
export function bindMediaToggles(stream, micButton, camButton) {
  const bind = (button, kind, onText, offText) => {
    const track = stream ? stream.getTracks().find((t) => t.kind === kind) : null;
    button.hidden = !track;
    if (!track) return;
    button.textContent = onText;
    button.addEventListener("click", () => {
      track.enabled = !track.enabled;
      button.textContent = track.enabled ? onText : offText;
      button.setAttribute("aria-pressed", String(!track.enabled));
    });
  };
  bind(micButton, "audio", "Mute microphone", "Unmute microphone");
  bind(camButton, "video", "Turn camera off", "Turn camera on");
}

export function stopStream(stream) {
  if (stream) for (const track of stream.getTracks()) track.stop();
}

// A server message from a WebSocket event, or null when the frame is not JSON.
export function parseMessage(event) {
  try {
    return JSON.parse(event.data);
  } catch {
    return null;
  }
}

// Answering the server's first offer: its first audio and first video m-lines are the ones this
// page publishes on (sendonly with the local track), or inactive when there is no such track.
// Returns the mids used.
export async function publishLocalTracks(pc, localStream) {
  const mids = [];
  const transceivers = pc.getTransceivers();
  for (const kind of ["audio", "video"]) {
    const transceiver = transceivers.find((t) => t.receiver.track.kind === kind);
    if (!transceiver) continue;
    const track = localStream ? localStream.getTracks().find((t) => t.kind === kind) : null;
    if (track) {
      await transceiver.sender.replaceTrack(track);
      transceiver.direction = "sendonly";
    } else {
      transceiver.direction = "inactive";
    }
    mids.push(transceiver.mid);
  }
  return mids;
}
