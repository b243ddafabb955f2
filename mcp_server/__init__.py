"""The MCP face of the CXR Draft Auditor (tools, resources, prompt; stdio and streamable HTTP)."""
