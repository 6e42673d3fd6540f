/// A peer-traffic address, `host:port`, as given by `--listen`, `--peer` or a membership change.
/// IPv6 literals are written in brackets: `[::1]:7000`.
package struct PeerAddress: Sendable, Hashable, CustomStringConvertible {
    /// A host name or an IP literal (without brackets).
    package var host: String
    /// The TCP port; 0 asks the system for a free one when listening.
    package var port: Int

    package init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port` or `[v6]:port`; the port must be 0...65535 and the host non-empty.
    package init(parsing text: String) throws(TransportError) {
        let bad = { (why: String) in TransportError(.invalidAddress, "'\(text)' is not host:port (\(why))") }
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw bad("unclosed '['") }
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw bad("no port after ']'") }
            portPart = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw bad("no port") }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
            // An unbracketed v6 literal would be ambiguous about where the port starts.
            guard !hostPart.contains(":") else { throw bad("IPv6 hosts go in brackets") }
        }
        guard !hostPart.isEmpty else { throw bad("empty host") }
        guard !portPart.isEmpty, portPart.allSatisfy(\.isASCII), let port = Int(portPart), (0...65535).contains(port)
        else { throw bad("port must be a number from 0 to 65535") }
        self.host = String(hostPart)
        self.port = port
    }

    /// `host:port`, with brackets around an IPv6 literal.
    package var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
