"""The baseline for start-up time: a server on the same MCP SDK with one trivial tool and nothing else.
bench/mcp_stdio.py starts it the same way as ``cxr-auditor serve`` and reports the ratio."""

from mcp.server.mcpserver import MCPServer

server = MCPServer("noop")


@server.tool()
def echo(text: str) -> str:
    """Return the text."""
    return text


if __name__ == "__main__":
    server.run()
