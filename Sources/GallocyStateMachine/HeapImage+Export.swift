#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

// `gallocy log export`: the heap as a plain file of heap_size bytes, byte 0 being the byte at
// heap_base. Zero pages are not written: the file is sized with ftruncate, which leaves holes
// that read as zeros, so a 256 MiB heap with a few pages written exports in a few kilobytes of disk.
extension HeapImage {
    /// Writes the heap to a new file at `path` (replacing any file there), sparse where the heap
    /// is zero. The file is synced before it is closed.
    package func export(toPath path: String) throws(StateMachineError) {
        let fd = retryingOnInterrupt { open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
        guard fd >= 0 else { throw StateMachineError(.system, "open \(path) failed: errno \(errno)") }
        do throws(StateMachineError) {
            try export(toFileDescriptor: fd)
            guard fsync(fd) == 0 else { throw StateMachineError(.system, "fsync \(path) failed: errno \(errno)") }
        } catch {
            close(fd)
            throw error
        }
        guard close(fd) == 0 else { throw StateMachineError(.system, "close \(path) failed: errno \(errno)") }
    }

    /// Writes the heap to the open file `fd` from offset 0 (`pwrite` of each non-zero page at its
    /// offset, then `ftruncate` to the heap size). The file should be empty: pages that are zero
    /// here are not written, so older bytes there would stay.
    package func export(toFileDescriptor fd: Int32) throws(StateMachineError) {
        guard retryingOnInterrupt({ ftruncate(fd, off_t(size)) }) == 0 else {
            throw StateMachineError(.system, "ftruncate to \(size) bytes failed: errno \(errno)")
        }
        try forEachNonZeroPage { (page, bytes) throws(StateMachineError) in
            var done = 0
            while done < bytes.count {
                let written = pwrite(
                    fd, bytes.baseAddress.unsafelyUnwrapped + done, bytes.count - done, off_t(page * pageSize + done))
                if written < 0 {
                    if errno == EINTR { continue }
                    throw StateMachineError(.system, "pwrite of page \(page) failed: errno \(errno)")
                }
                guard written > 0 else { throw StateMachineError(.system, "pwrite of page \(page) wrote nothing") }
                done += written
            }
        }
    }

    private func retryingOnInterrupt(_ call: () -> Int32) -> Int32 {
        while true {
            let result = call()
            if result >= 0 || errno != EINTR { return result }
        }
    }
}
