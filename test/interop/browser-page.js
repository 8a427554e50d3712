// The page the browser interop tests load in headless Chromium (served by browser.ts from
// http://127.0.0.1:EPHEMERAL, a secure context, so getUserMedia works with the fake devices).
// It drives two real WebSocket SIP stacks, SIP.js (its ES modules straight from node_modules:
// the package is plain ESM with relative imports, no bundler needed) and JsSIP (CommonJS only,
// bundled once per run by browser.ts into /jssip.js, an IIFE setting window.JsSIP).
//
// The test calls `window.sipTest.*` through page.evaluate; every stack event lands in
// `window.sipTest.events` ({ phone, call, type, status, cause }), which the test waits on with
// page.waitForFunction. Nothing here sleeps: each step resolves on the stack's own event.
import * as SIP from "/sip.js/index.js";

const events = [];
const phones = new Map();
const calls = new Map();
let nextCall = 0;

function record(phone, call, type, extra = {}) {
  events.push({ phone, call, type, t: Date.now(), ...extra });
}

/** A SIP.js phone: UserAgent over `wsUrl`, a Registerer, Inviters. */
async function sipjsPhone(name, { wsUrl, aor }) {
  const ua = new SIP.UserAgent({
    uri: SIP.UserAgent.makeURI(aor),
    transportOptions: { server: wsUrl, connectionTimeout: 5 },
    logBuiltinEnabled: false,
    logLevel: "error",
    // No STUN/TURN: host candidates only, gathered at once; bounded anyway.
    sessionDescriptionHandlerFactoryOptions: {
      iceGatheringTimeout: 2000,
      peerConnectionConfiguration: { iceServers: [] },
    },
    delegate: {
      onDisconnect: (error) => record(name, undefined, "disconnected", { cause: String(error ?? "") }),
      // An incoming call: answered at once (the test's callee), with the fake microphone.
      onInvite: (invitation) => {
        const id = `in:${invitation.request.callId}`;
        record(name, id, "incoming");
        invitation.stateChange.addListener((state) => {
          if (state === SIP.SessionState.Established) record(name, id, "answered");
          if (state === SIP.SessionState.Terminated) record(name, id, "ended");
        });
        invitation
          .accept({ sessionDescriptionHandlerOptions: { constraints: { audio: true, video: false } } })
          .catch((err) => record(name, id, "error", { cause: String(err) }));
      },
    },
  });
  await ua.start();
  const registerer = new SIP.Registerer(ua, { expires: 600 });
  return {
    register: () =>
      new Promise((resolve, reject) => {
        registerer
          .register({
            requestDelegate: {
              onAccept: (r) => {
                record(name, undefined, "registered", { status: r.message.statusCode });
                resolve(r.message.statusCode);
              },
              onReject: (r) => {
                record(name, undefined, "registration-failed", { status: r.message.statusCode });
                reject(new Error(`REGISTER rejected: ${r.message.statusCode}`));
              },
            },
          })
          .catch(reject);
      }),
    unregister: () =>
      new Promise((resolve, reject) => {
        registerer
          .unregister({
            requestDelegate: {
              onAccept: (r) => resolve(r.message.statusCode),
              onReject: (r) => reject(new Error(`unREGISTER rejected: ${r.message.statusCode}`)),
            },
          })
          .catch(reject);
      }),
    call: (id, target, headers) => {
      const uri = SIP.UserAgent.makeURI(target);
      if (!uri) throw new Error(`bad target ${target}`);
      const inviter = new SIP.Inviter(ua, uri, {
        extraHeaders: headers,
        sessionDescriptionHandlerOptions: { constraints: { audio: true, video: false } },
      });
      inviter.stateChange.addListener((state) => {
        if (state === SIP.SessionState.Established) record(name, id, "accepted", { status: 200 });
        if (state === SIP.SessionState.Terminated) record(name, id, "terminated");
      });
      inviter
        .invite({
          requestDelegate: {
            onProgress: (r) => record(name, id, "progress", { status: r.message.statusCode }),
            onReject: (r) =>
              record(name, id, "rejected", { status: r.message.statusCode, cause: r.message.reasonPhrase }),
          },
        })
        .catch((err) => record(name, id, "error", { cause: String(err) }));
      return {
        cancel: () => inviter.cancel(),
        bye: () =>
          inviter.bye({
            requestDelegate: {
              onAccept: (r) => record(name, id, "bye-answered", { status: r.message.statusCode }),
              onReject: (r) => record(name, id, "bye-answered", { status: r.message.statusCode }),
            },
          }),
      };
    },
    stop: () => ua.stop(),
  };
}

/** A JsSIP phone: UA over JsSIP.WebSocketInterface(wsUrl), ua.call() sessions. */
async function jssipPhone(name, { wsUrl, aor }) {
  const JsSIP = window.JsSIP;
  if (!JsSIP) throw new Error("JsSIP bundle not loaded");
  const ua = new JsSIP.UA({
    sockets: [new JsSIP.WebSocketInterface(wsUrl)],
    uri: aor,
    register: false,
    register_expires: 600,
    session_timers: false,
    // One WebSocket for the whole test: a reconnection would be a failure, not a retry.
    connection_recovery_min_interval: 30,
    connection_recovery_max_interval: 60,
  });
  ua.on("disconnected", (e) => record(name, undefined, "disconnected", { cause: String(e?.reason ?? "") }));
  // An incoming call: answered at once (the test's callee), with the fake microphone.
  ua.on("newRTCSession", (e) => {
    if (e.originator !== "remote") return;
    const id = `in:${e.request.call_id}`;
    record(name, id, "incoming");
    e.session.on("confirmed", () => record(name, id, "answered"));
    e.session.on("ended", (x) => record(name, id, "ended", { cause: x.cause, originator: x.originator }));
    e.session.on("failed", (x) => record(name, id, "rejected", { cause: x.cause, originator: x.originator }));
    e.session.answer({ mediaConstraints: { audio: true, video: false }, pcConfig: { iceServers: [] } });
  });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("JsSIP: not connected within 5 s")), 5000);
    ua.once("connected", () => {
      clearTimeout(timer);
      resolve();
    });
    ua.start();
  });
  return {
    register: () =>
      new Promise((resolve, reject) => {
        const ok = (e) => {
          ua.removeListener("registrationFailed", bad);
          record(name, undefined, "registered", { status: e.response.status_code });
          resolve(e.response.status_code);
        };
        const bad = (e) => {
          ua.removeListener("registered", ok);
          record(name, undefined, "registration-failed", { status: e.response?.status_code, cause: e.cause });
          reject(new Error(`REGISTER failed: ${e.cause}`));
        };
        ua.once("registered", ok);
        ua.once("registrationFailed", bad);
        ua.register();
      }),
    unregister: () =>
      new Promise((resolve) => {
        ua.once("unregistered", (e) => resolve(e.response?.status_code));
        ua.unregister();
      }),
    call: (id, target, headers) => {
      let answered = false;
      const session = ua.call(target, {
        extraHeaders: headers,
        mediaConstraints: { audio: true, video: false },
        pcConfig: { iceServers: [] },
        eventHandlers: {
          progress: (e) => {
            if (e.originator === "remote") record(name, id, "progress", { status: e.response.status_code });
          },
          accepted: () => {
            answered = true;
            record(name, id, "accepted", { status: 200 });
          },
          confirmed: () => record(name, id, "confirmed"),
          failed: (e) =>
            record(name, id, "rejected", {
              status: e.message?.status_code,
              cause: e.cause,
              originator: e.originator,
            }),
          ended: (e) => record(name, id, "ended", { cause: e.cause, originator: e.originator }),
        },
      });
      // JsSIP reports no response to its BYE (its "ended" comes as it sends it): the test reads
      // the 200 from the WebSocket's frames, as for every other message.
      return {
        cancel: () => session.terminate(),
        bye: () => {
          if (!answered) throw new Error("bye before the call was answered");
          session.terminate();
        },
      };
    },
    stop: () => ua.stop(),
  };
}

window.sipTest = {
  events,
  async phone(name, lib, opts) {
    const p = lib === "jssip" ? await jssipPhone(name, opts) : await sipjsPhone(name, opts);
    phones.set(name, p);
    return name;
  },
  register: (name) => phones.get(name).register(),
  unregister: (name) => phones.get(name).unregister(),
  call(name, target, headers = []) {
    const id = `${name}-${++nextCall}`;
    calls.set(id, phones.get(name).call(id, target, headers));
    return id;
  },
  cancel: (id) => calls.get(id).cancel(),
  bye: (id) => calls.get(id).bye(),
  async stop(name) {
    await phones.get(name)?.stop();
    phones.delete(name);
  },
  ready: true,
};
