// A minimal MCP Apps host for the viewer's browser test (tests/test_viewer_browser.py). It speaks the
// host side of the protocol with the official package (@modelcontextprotocol/ext-apps, its AppBridge)
// and renders the app as hosts do: in a sandboxed iframe (scripts only, an opaque origin). The app's
// tools/call requests are queued for the test, which runs them on the real MCP server and answers.
import { AppBridge, PostMessageTransport } from "@modelcontextprotocol/ext-apps/app-bridge";

const queue = [];
const pending = new Map();
let nextCall = 1;
let bridge = null;
let frame = null;

window.host = {
  events: [],
  takeCalls() {
    return queue.splice(0, queue.length);
  },
  answer(id, result) {
    pending.get(id)(result);
    pending.delete(id);
  },
  async start({ html, tool, input, result, theme, width }) {
    frame = document.createElement("iframe");
    frame.setAttribute("sandbox", "allow-scripts");
    frame.setAttribute("title", "CXR audit viewer");
    frame.style.width = width + "px";
    frame.style.height = "400px";
    frame.style.border = "0";
    document.body.appendChild(frame);
    bridge = new AppBridge(
      null,
      { name: "cxr-viewer-test-host", version: "1.0.0" },
      { serverTools: {}, sandbox: { csp: {} } },
      { hostContext: { theme, displayMode: "inline", platform: "web", toolInfo: { tool },
        containerDimensions: { width, maxHeight: 6000 } } },
    );
    bridge.oncalltool = (params) =>
      new Promise((resolve) => {
        const id = nextCall++;
        pending.set(id, resolve);
        queue.push({ id, params });
      });
    bridge.onsizechange = ({ height }) => {
      if (height) frame.style.height = height + "px";
      window.host.events.push("size");
    };
    bridge.oninitialized = async () => {
      window.host.events.push("initialized");
      await bridge.sendToolInput({ arguments: input });
      await bridge.sendToolResult(result);
      window.host.events.push("result sent");
    };
    await bridge.connect(new PostMessageTransport(frame.contentWindow, frame.contentWindow));
    frame.srcdoc = html;
  },
  setWidth(width) {
    frame.style.width = width + "px";
  },
  setTheme(theme) {
    return bridge.sendHostContextChange({ theme });
  },
};
