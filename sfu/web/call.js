// One call over the server's WebSocket (docs/API.md "WebSocket"): join, answer the server's
// offers, publish the local camera and microphone, and show every other participant in a tile.
//
// The server always offers. Its first offer starts with one audio and one video m-line that we
// publish on; every other m-line carries one forwarded track, and the `tracks` message (sent just
// before each offer) says whose. An m-line may be recycled for another participant in a later
// offer, so tracks are placed by mid, never by stream id.
//
// In a cluster the node the page came from may not host the call: it answers the `join` with
// `redirect` and closes. The call then opens the socket at the `url` it names with the same token
// and the same `join`, with no visible change (at most MAX_REDIRECTS times for one join, then an
// error). A reconnect after a dropped socket starts again at the page's own node, which redirects
// to wherever the call lives by then (the node it was on may be gone).

import { el, explain, parseMessage, publishLocalTracks, setBanner } from "./common.js";

const RECONNECT_DELAYS = [1000, 2000, 4000, 8000, 8000];
const MAX_REDIRECTS = 3; // redirects one join follows
const DISCONNECTED_GRACE_MS = 8000;
const DEGRADED_BANNER_AFTER_MS = 5000; // a reduced picture is told only once it lasts this long
const SMALL_VIDEO_FROM = 4; // participants in the call from which pictures are sent at half size
// The lowest simulcast layer (320x240 of the 640x480 camera) is what a weak downlink receives of
// everyone. Chromium sends it at about 200 kbit/s: two of them with their audio (about 540 kbit/s
// with packet overheads) did not fit a 500 kbit/s downlink. At 150 they did on paper (about 390),
// but the server's estimate of such a link dips to 300-350 after a loss and one video was paused
// at each dip; at 100 (about 285 with the audio) both stayed on (tests/netns/test_simulcast_browser.py).
const LOWEST_LAYER_BPS = 100000;

export class SfuCall {
  // options: token, target ({space} or {room}), localStream (or null), grid (element for tiles),
  // banner (element for quality notes), place (words for the call: "this consultation"),
  // and callbacks onJoined(msg), onParticipants(list), onEnded(reason), onError(code, text).
  constructor(options) {
    this.options = options;
    this.token = options.token;
    this.target = options.target;
    this.localStream = options.localStream || null;
    this.grid = options.grid;
    this.pc = null;
    this.ws = null;
    this.selfId = null;
    this.participants = new Map(); // id -> {id, name, role}, the others in the call
    this.tracks = new Map(); // mid -> {participant, kind}
    this.tiles = new Map(); // participant id -> tile
    this.finished = false; // ended, refused or left: never reconnect
    this.attempt = 0;
    this.queue = Promise.resolve();
    this.published = false;
    this.sendLayers = null; // rid -> whether anyone receives that layer of our video (publish_layers)
    this.layers = {}; // participant id -> {rid, width, height} we receive of them, or null (paused)
    this.nodeUrl = null; // the WebSocket URL the call's socket is on (another node after a redirect)
    this.redirects = 0; // redirects followed for the current join
  }

  start() {
    this.connect();
    return this;
  }

  // The signaling socket of the node the page came from.
  originUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/v1/ws`;
  }

  // Open the socket and join: at the page's own node, or at `url` when a redirect named it.
  connect(url = null) {
    if (url === null) this.redirects = 0; // a new join (start, reconnect) starts at our node
    const target = url || this.originUrl();
    let ws;
    try {
      ws = new WebSocket(target);
    } catch (error) {
      console.warn("sfu: could not open the signaling socket:", error && error.name);
      this.connectionLost();
      return;
    }
    this.ws = ws;
    this.nodeUrl = target;
    ws.onopen = () => {
      // the token goes in the first message, not the URL (URLs end up in proxy logs)
      this.send({ type: "auth", token: this.token });
      this.send({ type: "join", target: this.target });
    };
    ws.onmessage = (event) => {
      const message = parseMessage(event);
      if (!message) return;
      if (message.type === "redirect") {
        // at once, not queued: the node closes this socket right after, which must not count
        // as a lost connection
        if (ws === this.ws) this.onRedirect(message.url);
        return;
      }
      this.queue = this.queue.then(() => this.handle(message)).catch((error) => {
        console.error("sfu: signaling step failed:", error && error.name, error && error.message);
      });
    };
    ws.onclose = () => {
      if (ws !== this.ws || this.finished) return;
      this.connectionLost();
    };
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  async handle(message) {
    switch (message.type) {
      case "joined": return this.onJoined(message);
      case "tracks": return this.onTracks(message.tracks || []);
      case "offer": return this.onOffer(message.sdp);
      case "participant_joined": return this.onParticipantJoined(message.participant);
      case "participant_left": return this.onParticipantLeft(message.participant);
      case "quality": return this.onQuality(message);
      case "publish_layers": return this.onPublishLayers(message.layers);
      case "video_layers": return this.onVideoLayers(message.layers);
      case "error": return this.onServerError(message.code, message.message);
      case "ended": return this.onEnded(message.reason);
      default: return undefined;
    }
  }

  onJoined(message) {
    this.selfId = message.participant;
    this.iceServers = Array.isArray(message.ice_servers) ? message.ice_servers : [];
    this.participants.clear();
    for (const p of message.participants || []) {
      this.participants.set(p.id, p);
      this.tile(p.id);
    }
    setBanner(this.options.banner, "");
    this.emitParticipants();
    if (this.options.onJoined) this.options.onJoined(message);
  }

  onTracks(list) {
    this.tracks.clear();
    for (const t of list) this.tracks.set(String(t.mid), { participant: t.participant, kind: t.kind });
  }

  async onOffer(sdp) {
    if (!this.pc) this.createPeerConnection();
    const pc = this.pc;
    await pc.setRemoteDescription({ type: "offer", sdp });
    if (!this.published) {
      this.published = true;
      await this.publish(pc);
    }
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    this.send({ type: "answer", sdp: pc.localDescription.sdp });
    for (const transceiver of pc.getTransceivers()) this.place(transceiver);
    this.fitSentVideo();
  }

  createPeerConnection() {
    const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle", iceServers: this.iceServers || [] });
    this.pc = pc;
    if (this.options.exposeAs) window[this.options.exposeAs] = this;
    // Trickle is optional in the protocol and off by default: the server learns our address from
    // our connectivity checks (peer-reflexive). Candidates trickled after the server's ICE has
    // completed make it check (and, aggressively, nominate) extra pairs, which can move the
    // media path under a running call on hosts with several interfaces.
    pc.onicecandidate = (event) => {
      if (!this.options.trickle || !event.candidate || !event.candidate.candidate) return;
      const { candidate, sdpMid, sdpMLineIndex } = event.candidate;
      this.send({ type: "candidate", candidate, sdpMid, sdpMLineIndex });
    };
    pc.ontrack = (event) => this.place(event.transceiver);
    // A media path that stays down is rebuilt by joining again (the server replaces our old
    // connection): aiortc offers no ICE restart.
    pc.onconnectionstatechange = () => {
      if (pc !== this.pc || this.finished) return;
      clearTimeout(this.stallTimer);
      if (pc.connectionState === "connected") this.attempt = 0;
      if (pc.connectionState === "failed") this.connectionLost();
      if (pc.connectionState === "disconnected") {
        this.stallTimer = setTimeout(() => {
          if (pc === this.pc && pc.connectionState === "disconnected" && !this.finished) this.connectionLost();
        }, DISCONNECTED_GRACE_MS);
      }
    };
  }

  // The first offer's first audio and first video m-lines are ours to publish on.
  async publish(pc) {
    for (const mid of await publishLocalTracks(pc, this.localStream)) {
      this.ownMids = (this.ownMids || new Set()).add(mid);
    }
  }

  // Put a transceiver's received track into the tile of whoever the `tracks` message says.
  place(transceiver) {
    const mid = transceiver.mid;
    if (mid === null || (this.ownMids && this.ownMids.has(mid))) return;
    const track = transceiver.receiver.track;
    const info = this.tracks.get(mid);
    const owner = info && this.participants.has(info.participant) ? info.participant : null;
    for (const [id, tile] of this.tiles) {
      if (id !== owner && tile.media[track.kind] === track) this.setTileTrack(tile, track.kind, null);
    }
    if (owner && transceiver.currentDirection !== "inactive") {
      this.setTileTrack(this.tile(owner), track.kind, track);
    }
  }

  tile(id) {
    let tile = this.tiles.get(id);
    if (tile) return tile;
    const video = el("video", { autoplay: true, playsinline: true, class: "tile-video" });
    const label = el("span", { class: "tile-name" });
    const placeholder = el("div", { class: "tile-placeholder", text: "Connecting video…" });
    const unmute = el("button", { class: "tile-unmute", type: "button", hidden: true, text: "Turn on sound" });
    const root = el("figure", { class: "tile", "data-participant": id }, video, placeholder,
                    el("figcaption", {}, label), unmute);
    tile = { id, root, video, label, placeholder, unmute, media: { audio: null, video: null } };
    unmute.addEventListener("click", () => {
      video.muted = false;
      unmute.hidden = true;
      video.play().catch(() => {});
    });
    if (id in this.layers) video.title = describeLayer(this.layers[id]);
    this.tiles.set(id, tile);
    this.grid.append(root);
    this.labelTile(tile);
    return tile;
  }

  labelTile(tile) {
    const p = this.participants.get(tile.id);
    tile.label.textContent = p ? roleLabel(p) : "";
  }

  setTileTrack(tile, kind, track) {
    if (tile.media[kind] === track) return;
    tile.media[kind] = track;
    const tracks = [tile.media.audio, tile.media.video].filter(Boolean);
    tile.video.srcObject = tracks.length ? new MediaStream(tracks) : null;
    tile.placeholder.hidden = Boolean(tile.media.video);
    tile.root.classList.toggle("has-video", Boolean(tile.media.video));
    if (!tracks.length) return;
    tile.video.play().catch((error) => {
      // A newer srcObject interrupts play() (AbortError): that one plays. Autoplay with sound
      // may need a click on the page first (NotAllowedError): play muted and offer a button.
      if (!error || error.name !== "NotAllowedError") return;
      tile.video.muted = true;
      tile.unmute.hidden = false;
      tile.video.play().catch(() => {});
    });
  }

  removeTile(id) {
    const tile = this.tiles.get(id);
    if (!tile) return;
    tile.video.srcObject = null;
    tile.root.remove();
    this.tiles.delete(id);
  }

  onParticipantJoined(p) {
    if (!p || !p.id) return;
    this.participants.set(p.id, p);
    this.labelTile(this.tile(p.id));
    this.emitParticipants();
  }

  onParticipantLeft(p) {
    const id = p && typeof p === "object" ? p.id : p;
    this.participants.delete(id);
    delete this.layers[id];
    this.removeTile(id);
    this.emitParticipants();
  }

  emitParticipants() {
    this.fitSentVideo();
    if (this.options.onParticipants) this.options.onParticipants([...this.participants.values()]);
  }

  // In a call of four or more each picture is a small tile on the others' screens: send it at half
  // the size and at most 15 frames/s (a quarter of the pixels, so each receiver decodes a quarter
  // as much and each sender encodes less), as conferencing clients do for grids; back to full size
  // when the call shrinks. With simulcast (several encodings, one per rid) the server picks a layer
  // for each receiver, so the sizes stay as the browser chose them; only the frame rate is capped,
  // and each layer is turned on or off as the server's `publish_layers` says (no one receives it:
  // don't encode it). Changes the encoder only: no renegotiation. One change at a time (each
  // setParameters must follow its own getParameters), and a failed step does not stop the next.
  fitSentVideo() {
    this.fitting = (this.fitting || Promise.resolve()).then(() => this.fitSentVideoNow()).catch((error) => {
      console.warn("could not change the sent video:", error && error.name, error && error.message);
    });
    return this.fitting;
  }

  async fitSentVideoNow() {
    const pc = this.pc;
    if (!pc || !this.ownMids) return;
    const small = this.participants.size + 1 >= SMALL_VIDEO_FROM;
    for (const transceiver of pc.getTransceivers()) {
      const sender = transceiver.sender;
      if (!this.ownMids.has(transceiver.mid) || !sender.track || sender.track.kind !== "video") continue;
      const params = sender.getParameters();
      const encodings = params.encodings || [];
      const changed = encodings.length > 1
        ? this.fitLayers(encodings, small, sender.track) : fitSingle(encodings[0], small);
      if (!changed) continue;
      try {
        await sender.setParameters(params);
      } catch (error) {
        console.warn("could not change the sent video:", error);
      }
    }
  }

  // Simulcast encodings: active as `publish_layers` says (a rid it does not name, or before it
  // came, stays on; the lowest layer is always on), the lowest layer at most LOWEST_LAYER_BPS,
  // and in a call of four or more (small tiles) each layer at half its usual size and at most
  // 15 frames/s, as a single encoding is. Chromium sends as many layers as the camera's size
  // allows (two for 640x480: 320x240 and 640x480 by default); explicit scales must count only
  // those, or it drops the top one and keeps the others' scales. Back to its defaults when the
  // call shrinks. Returns whether anything changed.
  fitLayers(encodings, small, track) {
    let changed = false;
    if (encodings[0].maxBitrate !== LOWEST_LAYER_BPS) {
      encodings[0].maxBitrate = LOWEST_LAYER_BPS;
      changed = true;
    }
    const sent = Math.min(encodings.length, layersFor(track));
    encodings.forEach((encoding, index) => {
      const wanted = this.sendLayers && encoding.rid in this.sendLayers ? Boolean(this.sendLayers[encoding.rid]) : true;
      const active = wanted || index === 0;
      if (encoding.active !== active) {
        encoding.active = active;
        changed = true;
      }
      const scale = small ? 2 ** Math.max(1, sent - index) : undefined;
      if (encoding.scaleResolutionDownBy !== scale) {
        if (scale === undefined) delete encoding.scaleResolutionDownBy;
        else encoding.scaleResolutionDownBy = scale;
        changed = true;
      }
      changed = capFramerate(encoding, small) || changed;
    });
    return changed;
  }

  // {"type": "publish_layers", "layers": {"q": true, "h": true, "f": false}}: which layers of our
  // video anyone receives (docs/API.md). A client without simulcast has nothing to change.
  onPublishLayers(layers) {
    if (!layers || typeof layers !== "object") return undefined;
    this.sendLayers = { ...layers };
    return this.fitSentVideo();
  }

  // {"type": "video_layers", "layers": {"<participant>": {rid, width, height} or null}}: which
  // layer of each participant's video we receive (null: paused for us). Kept for the tiles'
  // tooltips and for tests (window.sfuCall.layers).
  onVideoLayers(layers) {
    if (!layers || typeof layers !== "object") return;
    this.layers = { ...this.layers, ...layers };
    for (const [id, layer] of Object.entries(layers)) {
      const tile = this.tiles.get(id);
      if (tile) tile.video.title = describeLayer(layer);
    }
  }

  onQuality(message) {
    this.quality = { level: message.level, reason: message.reason, own: message.participant === this.selfId };
    if (message.layers && typeof message.layers === "object") this.onVideoLayers(message.layers);
    const banner = this.options.banner;
    if (!banner) return;
    const own = !message.participant || message.participant === this.selfId;
    const other = this.participants.get(message.participant);
    const whose = own ? "Your connection" : `The connection of ${other ? other.name || "a participant" : "a participant"}`;
    const reason = message.reason ? ` (${String(message.reason).replace(/_/g, " ")})` : "";
    clearTimeout(this.degradedTimer);
    if (message.level === "degraded") {
      // a reduced picture for a few seconds (a dip the estimate recovers from) is nothing a
      // person can act on: say so only when it lasts; audio only is said at once
      const text = `${whose} is weak: video quality is reduced${reason}.`;
      setBanner(banner, ""); // an "audio only" told before is over: video is back, reduced
      this.degradedTimer = setTimeout(() => {
        if (this.quality && this.quality.level === "degraded") setBanner(banner, text, "warn");
      }, DEGRADED_BANNER_AFTER_MS);
    } else if (message.level === "audio_only") {
      setBanner(banner, `${whose} is too weak for video: audio only for now${reason}.`, "warn");
    } else {
      setBanner(banner, "");
    }
  }

  // {"type": "redirect", "url": "ws://host:port/v1/ws"}: the call lives on another node. Nothing
  // on the page changes: the same token and join go there.
  onRedirect(url) {
    if (this.finished) return;
    const next = redirectTarget(url);
    const old = this.ws;
    this.ws = null;
    if (old) {
      old.onclose = null;
      old.onmessage = null;
      old.close();
    }
    if (!next || this.redirects >= MAX_REDIRECTS) {
      const code = next ? "too_many_redirects" : "bad_redirect";
      console.warn(`sfu: ${code}:`, String(url).slice(0, 200));
      this.finish();
      if (this.options.onError) this.options.onError(code, explain(code, "", this.options.place));
      return;
    }
    this.redirects += 1;
    if (this.pc) this.resetMedia(); // (a join is answered before any media: normally nothing)
    this.connect(next);
  }

  onServerError(code, text) {
    if (code === "bad_request") {
      console.warn("sfu: the server refused a message:", text);
      return;
    }
    if (code === "media_failed" && this.selfId) {
      this.connectionLost(); // the server dropped our media path: join again
      return;
    }
    this.finish();
    if (this.options.onError) this.options.onError(code, explain(code, text, this.options.place));
  }

  onEnded(reason) {
    this.finish();
    if (this.options.onEnded) this.options.onEnded(reason);
  }

  connectionLost() {
    if (this.reconnectTimer || this.finished) return;
    const delay = RECONNECT_DELAYS[this.attempt];
    this.resetMedia();
    if (delay === undefined) {
      this.finish();
      if (this.options.onError) this.options.onError("media_failed", explain("media_failed"));
      return;
    }
    this.attempt += 1;
    setBanner(this.options.banner, "The connection was interrupted. Reconnecting…", "warn");
    if (this.ws) {
      const old = this.ws;
      this.ws = null;
      old.onclose = null;
      old.close();
    }
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.finished) this.connect();
    }, delay);
  }

  resetMedia() {
    clearTimeout(this.stallTimer);
    if (this.pc) {
      this.pc.ontrack = null;
      this.pc.onconnectionstatechange = null;
      this.pc.close();
    }
    this.pc = null;
    this.published = false;
    this.ownMids = null;
    this.sendLayers = null;
    this.layers = {};
    this.tracks.clear();
    for (const id of [...this.tiles.keys()]) this.removeTile(id);
  }

  // Stop for good: close the socket and the peer connection (local tracks belong to the page).
  finish() {
    this.finished = true;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.degradedTimer);
    this.reconnectTimer = null;
    this.resetMedia();
    if (this.ws) {
      const ws = this.ws;
      ws.onclose = null;
      if (ws.readyState === WebSocket.OPEN) ws.close();
    }
  }

  leave() {
    if (this.finished) return;
    this.send({ type: "leave" });
    this.finish();
  }
}

// One encoding (no simulcast): half size and 15 frames/s in a call of four or more. Returns
// whether anything changed.
function fitSingle(encoding, small) {
  if (!encoding || (encoding.scaleResolutionDownBy || 1) === (small ? 2 : 1)) return false;
  encoding.scaleResolutionDownBy = small ? 2 : 1;
  capFramerate(encoding, small);
  return true;
}

// How many simulcast layers Chromium sends for a camera of the track's size (libwebrtc's
// limit by resolution: three from 960x540, two from 480x270, else one).
function layersFor(track) {
  const settings = track && track.getSettings ? track.getSettings() : {};
  const pixels = (settings.width || 640) * (settings.height || 480);
  if (pixels >= 960 * 540) return 3;
  if (pixels >= 480 * 270) return 2;
  return 1;
}

function capFramerate(encoding, small) {
  if (small && encoding.maxFramerate !== 15) {
    encoding.maxFramerate = 15;
    return true;
  }
  if (!small && encoding.maxFramerate !== undefined) {
    delete encoding.maxFramerate;
    return true;
  }
  return false;
}

// A redirect's url when it is a WebSocket URL this page may open (wss: only from an https page),
// else null.
function redirectTarget(url) {
  if (typeof url !== "string") return null;
  let parsed;
  try {
    parsed = new URL(url);
  } catch (error) {
    return null;
  }
  const secure = location.protocol === "https:";
  const allowed = secure ? ["wss:"] : ["ws:", "wss:"];
  if (!allowed.includes(parsed.protocol) || !parsed.host || parsed.username || parsed.password) return null;
  return parsed.href;
}

function describeLayer(layer) {
  if (!layer) return "Video paused (connection too weak)";
  const size = layer.width && layer.height ? ` ${layer.width}x${layer.height}` : "";
  return layer.rid ? `Receiving layer ${layer.rid}${size}` : `Receiving${size}`;
}

function roleLabel(p) {
  const name = p.name || "";
  if (p.role === "staff" || p.role === "admin") return name ? `${name} (clinic)` : "Clinician";
  if (p.role === "guest") return name && name.toLowerCase() !== "guest" ? `${name} (guest)` : "Guest";
  return name || "Patient";
}
