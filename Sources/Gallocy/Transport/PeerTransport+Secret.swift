#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension PeerTransport {
    /// The largest secret file read (a secret is a few dozen bytes; this only stops a wrong path
    /// to a huge file from being read into memory).
    package static let maxSecretFileSize = 64 << 10

    /// Reads the shared secret from `path` (`--secret-file`). Trailing whitespace and newlines
    /// are removed, so that a file written with `echo` and one written with `printf` hold the
    /// same secret; what remains must not be empty.
    package static func readSecret(fromFile path: String) throws(TransportError) -> [UInt8] {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw TransportError(.invalidSecret, "cannot read the secret file \(path): \(error)")
        }
        guard data.count <= maxSecretFileSize else {
            throw TransportError(
                .invalidSecret, "the secret file \(path) holds \(data.count) bytes, more than \(maxSecretFileSize)")
        }
        var bytes = [UInt8](data)
        while let last = bytes.last, last == 0x20 || last == 0x09 || last == 0x0A || last == 0x0D { bytes.removeLast() }
        guard !bytes.isEmpty else { throw TransportError(.invalidSecret, "the secret file \(path) is empty") }
        return bytes
    }
}
