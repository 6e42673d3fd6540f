import CLMDB
import GallocyCodec
import Glibc

/// Why a storage operation failed. The one error type of `GallocyStorage`'s Raft storage, data
/// directory and verifier; `code` can be matched, `message` tells a person what to do.
package struct StorageError: Error, Sendable, Hashable, CustomStringConvertible {
    package enum Code: String, Sendable, Hashable {
        /// Another process holds the data directory's lock.
        case inUse
        /// The directory (or file) does not exist, or holds no Gallocy data.
        case notFound
        /// The directory holds data of a format version this build does not read.
        case unsupportedVersion
        /// Stored bytes are damaged: a checksum, a decode, LMDB's own structure, a truncated file.
        case corrupted
        /// The requested log index was compacted away (it is at or below the compacted index).
        case compacted
        /// The requested log index is beyond the last one stored.
        case unavailable
        /// A call would break an invariant of the log (a gap, a term going down, rewriting a
        /// committed entry); the caller has a bug, nothing was written.
        case invariantViolation
        /// The map reached its maximum size, or the disk is full.
        case full
        /// A write was attempted through a read-only opening.
        case readOnly
        /// Any other failure of the operating system or of LMDB.
        case io
    }

    package var code: Code
    package var message: String
    /// The LMDB or errno code underneath, when there is one.
    package var lmdbCode: Int32?

    package init(_ code: Code, _ message: String, lmdbCode: Int32? = nil) {
        self.code = code
        self.message = message
        self.lmdbCode = lmdbCode
    }

    package var description: String { message }

    /// Classifies an LMDB error.
    package init(_ error: LMDBError) {
        let code: Code =
            switch error.code {
            case _ where error.isCorruption: .corrupted
            case MDB_MAP_FULL, ENOSPC: .full
            case ENOENT: .notFound
            case EROFS: .readOnly
            default: .io
            }
        self.init(code, error.description, lmdbCode: error.code)
    }

    /// Wraps any error thrown by a storage operation as a `StorageError`, naming `context`.
    static func wrap(_ error: any Error, _ context: @autoclosure () -> String) -> StorageError {
        switch error {
        case let error as StorageError: error
        case let error as LMDBError: StorageError(error)
        case let error as CodecError: StorageError(.corrupted, "\(context()): \(error.message)")
        default: StorageError(.io, "\(context()): \(error)")
        }
    }
}

/// Runs `body`, turning whatever it throws into a `StorageError`.
@inline(__always)
func storageOperation<R>(_ context: @autoclosure () -> String, _ body: () throws -> R) throws(StorageError) -> R {
    do {
        return try body()
    } catch {
        throw StorageError.wrap(error, context())
    }
}
