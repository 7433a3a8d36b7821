// Drives the dashboard's purge form in a running headless chromium over the DevTools
// protocol (tests/it/dashboard.rs): fills the token, the kind and the values, clicks Purge
// and prints what the page shows in #purge-result, once per token given.
//
//   node --experimental-websocket dashboard_form.mjs WS_URL DASHBOARD_URL URL_TO_PURGE TOKEN...
const [wsUrl, pageUrl, purgeUrl, ...tokens] = process.argv.slice(2);
const ws = new WebSocket(wsUrl);
let nextId = 1;
const waiting = new Map();
ws.onmessage = (ev) => {
  const msg = JSON.parse(ev.data);
  if (msg.id && waiting.has(msg.id)) {
    waiting.get(msg.id)(msg);
    waiting.delete(msg.id);
  }
};
const send = (method, params = {}, sessionId) =>
  new Promise((resolve, reject) => {
    const id = nextId++;
    waiting.set(id, (m) => (m.error ? reject(new Error(JSON.stringify(m.error))) : resolve(m.result)));
    ws.send(JSON.stringify(sessionId ? { id, method, params, sessionId } : { id, method, params }));
  });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  await new Promise((r, e) => { ws.onopen = r; ws.onerror = () => e(new Error("websocket")); });
  const { targetId } = await send("Target.createTarget", { url: pageUrl });
  const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
  const evaluate = async (expression) =>
    (await send("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true }, sessionId)).result.value;
  const until = async (expression, what) => {
    for (let i = 0; i < 200; i++) {
      const v = await evaluate(expression);
      if (v) return v;
      await sleep(50);
    }
    throw new Error("timed out waiting for " + what);
  };
  await until(`document.getElementById("live") && document.getElementById("live").className === "on"`, "data");
  const results = [];
  for (const token of tokens) {
    await evaluate(`(() => {
      const $ = (id) => document.getElementById(id);
      $("purge-result").textContent = "";
      $("pf-token").value = ${JSON.stringify(token)};
      $("pf-kind").value = "urls";
      $("pf-values").value = ${JSON.stringify(purgeUrl)};
      document.querySelector("#purge-form button[type=submit]").click();
      return true;
    })()`);
    results.push(await until(`(() => {
      const t = document.getElementById("purge-result").textContent;
      return t && t !== "purging…" ? t : null;
    })()`, "purge result"));
  }
  // The purge list picks the purge up on the next poll.
  const listed = await until(`document.querySelectorAll("#purges tr.purge").length`, "purge row");
  // The charts drew data: pixels of the request-rate line above the zero line, and of the
  // hit-ratio line (drawn only over two seconds in a row with lookups).
  const drawn = await until(`(() => {
    const count = (id, rgb) => {
      const c = document.getElementById(id);
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height - 30 * (window.devicePixelRatio || 1)).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) {
        if (Math.abs(d[i] - rgb[0]) < 10 && Math.abs(d[i + 1] - rgb[1]) < 10 && Math.abs(d[i + 2] - rgb[2]) < 10 && d[i + 3] > 200) n++;
      }
      return n;
    };
    const out = { rps: count("c-rps", [78, 161, 255]), hit: count("c-hit", [62, 207, 142]) };
    return out.rps > 10 && out.hit > 10 ? out : null;
  })()`, "charts with data");
  console.log(JSON.stringify({ results, listed, drawn }));
}
main().then(() => process.exit(0), (e) => { console.error(String(e)); process.exit(1); });
