import GallocyCodec
import GallocyRaft
import GallocyStorage

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A member's data directory opened for the log tool: read-only, without taking the directory's
/// lock and without any write transaction, so it is safe beside the running member that owns it
/// (LMDB's reader table gives this opening a consistent view). What it reports is the directory as
/// of opening.
package final class LogDirectory {
    /// The path as given.
    package let path: String
    /// The storage, opened with `RaftStorage.Options.readOnly`.
    package let storage: RaftStorage

    /// Opens `path`, refusing with a message that says what is wrong: no such path, not a
    /// directory, no LMDB file, no Gallocy format record, a layout version this build does not
    /// read, or damaged metadata.
    package init(path: String) throws(LogToolError) {
        self.path = path
        try Self.checkIsDirectory(path)
        do {
            storage = try RaftStorage(path: path, options: .init(readOnly: true))
        } catch {
            throw LogToolError(error)
        }
    }

    /// Fails unless `path` names an existing directory (before LMDB gets to say something vaguer).
    package static func checkIsDirectory(_ path: String) throws(LogToolError) {
        var st = stat()
        guard stat(path, &st) == 0 else {
            let reason = String(cString: strerror(errno))
            throw LogToolError(.notADataDirectory, "\(path): no such data directory (\(reason))")
        }
        guard st.st_mode & S_IFMT == S_IFDIR else {
            throw LogToolError(
                .notADataDirectory, "\(path) is not a directory; give --data the member's data directory")
        }
        var data = stat()
        guard stat(path + "/data.mdb", &data) == 0 else {
            throw LogToolError(
                .notADataDirectory,
                "\(path) is not a Gallocy data directory: it has no data.mdb (give --data the directory a node was started with)"
            )
        }
    }

    /// The cluster settings, or a clear error when the directory was never bootstrapped.
    package func requireSettings() throws(LogToolError) -> ClusterSettings {
        guard let settings = storage.settings else {
            throw LogToolError(
                .notADataDirectory, "\(path) has no cluster settings: the member never bootstrapped or joined a cluster"
            )
        }
        return settings
    }

    /// The index replay goes to when none is given: the commit index (entries after it may still
    /// be replaced by a new leader).
    package var commitIndex: UInt64 { storage.hardState.commit }

    /// Calls `body` with every entry in `from...to` and its stored size, in index order. A damaged
    /// entry stops the walk with `.corrupted` naming its index, after every good entry before it
    /// has been passed to `body` (the batch holding it is re-read one entry at a time).
    package func forEachEntry(
        from: UInt64, through to: UInt64, _ body: (Entry, Int) throws(LogToolError) -> Void
    ) throws(LogToolError) {
        guard from <= to else { return }
        try checkRange(from: from, through: to)
        var next = from
        do {
            try storage.forEachEntry(from: from, to: to + 1) { entry, size in
                try body(entry, size)
                next = entry.index + 1
            }
        } catch let error as LogToolError {
            throw error
        } catch let error as StorageError where error.code == .corrupted {
            // Pass on the good entries of the batch that held the damaged one, then name it.
            while next <= to {
                let single: [Entry]
                do {
                    single = try storage.entries(from: next, to: next + 1)
                } catch {
                    throw LogToolError(.corrupted, "\(error.message) (run `gallocy log verify --data \(path)`)")
                }
                guard let entry = single.first else { break }
                try body(entry, EntryCodec.encode(entry).count)
                next += 1
            }
            throw LogToolError(error)
        } catch let error as StorageError where error.code == .compacted {
            throw LogToolError(
                .outOfRange,
                "\(error.message): the member compacted its log while the tool was reading; run the command again")
        } catch let error as StorageError {
            throw LogToolError(error)
        } catch {
            throw LogToolError(.corrupted, "reading the log of \(path): \(error)")
        }
    }

    /// Checks that `from...to` lies inside the stored log, with messages that say where it is.
    package func checkRange(from: UInt64, through to: UInt64) throws(LogToolError) {
        let first = storage.firstIndex
        let last = storage.lastIndex
        if from < first {
            throw LogToolError(
                .outOfRange,
                "entry \(from) is not in the log any more: it starts at \(first)"
                    + (first > 1 ? " (earlier entries were compacted into the snapshot)" : ""))
        }
        if to > last {
            throw LogToolError(.outOfRange, "entry \(to) is beyond the last index \(last) of \(path)")
        }
    }
}
