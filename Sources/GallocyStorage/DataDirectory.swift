import Glibc
import Synchronization

/// A member's data directory, held exclusively by one process for as long as this value lives.
///
/// Taking it creates the directory (and its parents) if missing and takes an exclusive, non-
/// blocking `flock` on the file `LOCK` inside, into which it writes the holder's pid. A second
/// process (or a second opening in the same process: `flock` locks belong to the open file) is
/// refused with `StorageError.Code.inUse` naming the holder's pid. The kernel releases the lock
/// when the holder exits, however it exits, so a crashed member never leaves a stale lock.
///
/// Offline readers (the log tool) open the LMDB environment read-only and do not take the lock.
package final class DataDirectory: Sendable {
    package static let lockFileName = "LOCK"

    /// The directory's path as given.
    package let path: String
    private let descriptor: Mutex<Int32>

    /// Creates `path` if needed and locks it. Wraps `mkdir`, `open`, `flock(LOCK_EX | LOCK_NB)`.
    package init(path: String) throws(StorageError) {
        self.path = path
        try Self.createDirectories(path)
        let lockPath = path + "/" + Self.lockFileName
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw StorageError(.io, "cannot open the lock file \(lockPath): \(Self.errnoText())", lmdbCode: errno)
        }
        var rc: Int32
        repeat { rc = flock(fd, LOCK_EX | LOCK_NB) } while rc != 0 && errno == EINTR
        if rc != 0 {
            let code = errno
            let holder = Self.readPID(fd)
            close(fd)
            if code == EWOULDBLOCK {
                let who = holder.map { "pid \($0)" } ?? "pid unknown"
                throw StorageError(
                    .inUse, "data directory \(path) is in use by another process (\(who))", lmdbCode: code)
            }
            throw StorageError(.io, "cannot lock \(lockPath): \(String(cString: strerror(code)))", lmdbCode: code)
        }
        // Record the holder for the error message a second process will print; the lock itself
        // is the flock, so a failure to write the pid only makes that message vaguer.
        let text = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        descriptor = Mutex(fd)
    }

    deinit {
        release()
    }

    /// Releases the lock now (closing its file); idempotent. Also done when the value is freed.
    package func release() {
        descriptor.withLock { fd in
            guard fd >= 0 else { return }
            // Clearing the pid first would race with the next holder writing its own; leave it.
            close(fd)
            fd = -1
        }
    }

    /// The pid written by the process that holds (or last held) the lock of `path`, if any.
    package static func recordedHolder(of path: String) -> Int32? {
        let fd = open(path + "/" + lockFileName, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return readPID(fd)
    }

    private static func readPID(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        let text = String(decoding: buffer[0..<count], as: UTF8.self).trimmingWhitespace
        return Int32(text)
    }

    /// `mkdir -p`.
    private static func createDirectories(_ path: String) throws(StorageError) {
        guard !path.isEmpty else { throw StorageError(.notFound, "the data directory path is empty") }
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/") {
            prefix += component
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw StorageError(.io, "cannot create directory \(prefix): \(errnoText())", lmdbCode: errno)
            }
            prefix += "/"
        }
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw StorageError(.io, "\(path) exists and is not a directory")
        }
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }
}

extension String {
    var trimmingWhitespace: String {
        String(self.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
