import CLMDB
import Glibc
import Synchronization

/// An LMDB environment (an `MDB_env`): one memory-mapped `data.mdb` file in a directory, holding
/// named databases, with closure-scoped transactions.
///
/// Threads and transactions:
/// - A transaction lives inside one closure on the calling thread and never crosses threads.
/// - Write transactions are serialised by a mutex (LMDB allows one writer at a time anyway), so
///   `write(_:)` may be called from any thread; it waits for the writer before it.
/// - The environment is opened with `MDB_NOTLS`, so read transactions are not tied to a
///   thread-local reader slot, and any number may run on any threads alongside the writer.
///
/// Durability: the environment is opened without `MDB_NOSYNC`, so every successful `write(_:)`
/// ends with exactly one durable sync (LMDB's `fdatasync` in `mdb_txn_commit`). One write
/// transaction per batch therefore means one sync per batch.
///
/// Map growth: the map size is only an upper bound on the file (the file grows as pages are
/// used). When a write transaction runs out of map (`MDB_MAP_FULL`), the transaction is aborted,
/// the map size is doubled with `mdb_env_set_mapsize`, and the write closure runs again from the
/// start, up to `Configuration.maxMapSize`. `mdb_env_set_mapsize` requires that this process
/// has no transaction open: the writer mutex keeps other writes out, and a read/write gate makes
/// the resize wait for open read transactions to finish (and new ones wait for the resize).
/// Two rules follow for callers:
/// - a write closure may run more than once, so it must not have side effects outside the
///   transaction (compute into locals, publish after `write` returns);
/// - never call `write(_:)` or `read(_:)` from inside a `read(_:)` closure on the same thread: a
///   resize would wait for the outer read transaction, which waits for the inner call.
package final class LMDBEnvironment: @unchecked Sendable {
    // @unchecked: `handle` is an MDB_env, which LMDB allows to be shared between threads; every
    // call that LMDB requires to be exclusive (write transactions, mdb_env_set_mapsize,
    // mdb_dbi_open) is made under `writer`, and resizes also hold `gate` exclusively.

    /// How to open an environment.
    package struct Configuration: Sendable {
        /// The initial map size in bytes (`mdb_env_set_mapsize`); it doubles on demand.
        package var mapSize: Int
        /// The map size beyond which a write fails with `MDB_MAP_FULL` instead of growing.
        package var maxMapSize: Int
        /// The number of named databases (`mdb_env_set_maxdbs`).
        package var maxDatabases: UInt32
        /// Concurrent read transactions across all processes (`mdb_env_set_maxreaders`).
        package var maxReaders: UInt32
        /// Opens with `MDB_RDONLY`: no write transaction is possible, and nothing is created.
        /// For offline tools, which may open the directory of a running member this way.
        package var readOnly: Bool
        /// Opens with `MDB_NOSYNC`: commits do not sync; `sync()` must be called explicitly.
        /// For benchmarks and scratch data only.
        package var noSync: Bool

        package init(
            mapSize: Int = 64 << 20, maxMapSize: Int = 1 << 40, maxDatabases: UInt32 = 8, maxReaders: UInt32 = 126,
            readOnly: Bool = false, noSync: Bool = false
        ) {
            self.mapSize = mapSize
            self.maxMapSize = maxMapSize
            self.maxDatabases = maxDatabases
            self.maxReaders = maxReaders
            self.readOnly = readOnly
            self.noSync = noSync
        }
    }

    private let handle: OpaquePointer
    /// The directory holding `data.mdb` and `lock.mdb`.
    package let path: String
    package let configuration: Configuration
    private let writer = Mutex<Void>(())
    private let gate = ResizeGate()
    private let currentMapSize: Atomic<Int>

    /// Opens (and, unless read-only, creates) the environment in the existing directory `path`.
    /// Wraps `mdb_env_create`, `mdb_env_set_maxdbs`, `mdb_env_set_mapsize`,
    /// `mdb_env_set_maxreaders` and `mdb_env_open`.
    ///
    /// Before any transaction reads the map, the opener checks that `data.mdb` is not shorter than
    /// its last committed transaction says (`mdb_env_info`): LMDB maps the file without checking,
    /// and the process would die of SIGBUS on the first read of a page past its end. A truncated
    /// file is reported as `MDB_CORRUPTED`.
    ///
    /// A read-only open whose lock file cannot be opened (a read-only copy of a directory) is
    /// retried with `MDB_NOLOCK`, which is safe only when no process writes to the directory.
    package init(path: String, configuration: Configuration = Configuration()) throws(LMDBError) {
        self.path = path
        self.configuration = configuration
        let dataFile = path + "/data.mdb"
        let existingSize = Self.fileSize(dataFile)
        if !configuration.readOnly, let existingSize, existingSize > 0, existingSize < 2 * Int(getpagesize()) {
            // LMDB would silently initialise a fresh, empty environment over a file this short.
            // (An empty file is what a crash leaves between creating data.mdb and LMDB's first
            // write of its two meta pages, which it writes at once: that one is fresh.)
            throw LMDBError(
                MDB_INVALID, "\(dataFile) is \(existingSize) bytes, too short to be an LMDB file (truncated?)")
        }
        var flags = UInt32(MDB_NOTLS)
        if configuration.readOnly { flags |= UInt32(MDB_RDONLY) }
        if configuration.noSync { flags |= UInt32(MDB_NOSYNC) }
        var opened: OpaquePointer
        do {
            opened = try Self.open(path, flags: flags, configuration)
        } catch let error where configuration.readOnly && (error.code == EACCES || error.code == EROFS) {
            opened = try Self.open(path, flags: flags | UInt32(MDB_NOLOCK), configuration)
        }
        var info = MDB_envinfo()
        mdb_env_info(opened, &info)
        do {
            try Self.checkFileCoversLastTransaction(opened, dataFile, lastPage: info.me_last_pgno)
        } catch {
            mdb_env_close(opened)
            throw error
        }
        handle = opened
        currentMapSize = Atomic(info.me_mapsize)
        if !configuration.readOnly { clearStaleReaders() }
    }

    /// Frees the reader slots of processes that died inside a read transaction (a SIGKILLed log
    /// tool, say), whose snapshots would otherwise keep the writer from reusing pages and make
    /// the file grow. Wraps `mdb_reader_check`; done when a writable environment opens and before
    /// the map grows. Returns the number of slots freed.
    @discardableResult
    package func clearStaleReaders() -> Int32 {
        var dead: Int32 = 0
        mdb_reader_check(handle, &dead)
        return dead
    }

    private static func open(_ path: String, flags: UInt32, _ configuration: Configuration) throws(LMDBError)
        -> OpaquePointer
    {
        var env: OpaquePointer?
        try LMDBError.check(mdb_env_create(&env), "creating an LMDB environment")
        guard let env else { throw LMDBError(ENOMEM, "creating an LMDB environment") }
        do {
            try LMDBError.check(mdb_env_set_maxdbs(env, configuration.maxDatabases), "setting the number of databases")
            try LMDBError.check(mdb_env_set_maxreaders(env, configuration.maxReaders), "setting the number of readers")
            if !configuration.readOnly {
                try LMDBError.check(mdb_env_set_mapsize(env, configuration.mapSize), "setting the map size")
            }
            try LMDBError.check(mdb_env_open(env, path, flags, 0o644), "opening the LMDB environment in \(path)")
        } catch {
            // LMDB requires mdb_env_close after a failed mdb_env_open.
            mdb_env_close(env)
            throw error
        }
        return env
    }

    private static func checkFileCoversLastTransaction(_ env: OpaquePointer, _ dataFile: String, lastPage: Int)
        throws(LMDBError)
    {
        var stat = MDB_stat()
        try LMDBError.check(mdb_env_stat(env, &stat), "reading the page size of \(dataFile)")
        let needed = (lastPage + 1) * Int(stat.ms_psize)
        guard let size = fileSize(dataFile) else { throw LMDBError(ENOENT, "finding \(dataFile)") }
        if size < needed {
            throw LMDBError(
                MDB_CORRUPTED,
                "\(dataFile) is \(size) bytes but its last transaction uses \(needed): the file is truncated")
        }
    }

    private static func fileSize(_ path: String) -> Int? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Int(st.st_size)
    }

    deinit {
        mdb_env_close(handle)
    }

    /// The map size now in force, in bytes.
    package var mapSize: Int { currentMapSize.load(ordering: .relaxed) }

    /// The bytes of `data.mdb` in use as of the last commit: pages up to the last one used
    /// (`mdb_env_info`, `mdb_env_stat`). Free pages inside count; for metrics.
    package var usedBytes: Int {
        var info = MDB_envinfo()
        var stat = MDB_stat()
        guard mdb_env_info(handle, &info) == MDB_SUCCESS, mdb_env_stat(handle, &stat) == MDB_SUCCESS else { return 0 }
        return (info.me_last_pgno + 1) * Int(stat.ms_psize)
    }

    /// Opens the named database `name`, creating it when `create` is set (writable environments
    /// only). Wraps `mdb_dbi_open` in a transaction of its own, which commits so that the handle
    /// is valid for the life of the environment. Call it before sharing the environment.
    package func openDatabase(_ name: String, create: Bool) throws(LMDBError) -> LMDBDatabase {
        let open = { (txn: borrowing LMDBTransaction) throws(LMDBError) -> LMDBDatabase in
            var dbi = MDB_dbi()
            let flags = create ? UInt32(MDB_CREATE) : 0
            let rc = mdb_dbi_open(txn.handle, name, flags, &dbi)
            if rc == MDB_NOTFOUND { throw LMDBError(rc, "database '\(name)' does not exist in \(self.path)") }
            try LMDBError.check(rc, "opening database '\(name)'")
            return LMDBDatabase(handle: dbi, name: name)
        }
        do {
            if configuration.readOnly {
                // mdb_dbi_open may not run concurrently with itself; the writer mutex is free in
                // a read-only environment, so it serves as the guard.
                return try writer.withLock { _ throws(LMDBError) in
                    try readCommitting { txn throws(LMDBError) in try open(txn) }
                }
            }
            return try write { txn in try open(txn) }
        } catch let error as LMDBError {
            throw error
        } catch {
            throw LMDBError(EIO, "opening database '\(name)': \(error)")
        }
    }

    /// Runs `body` in a read transaction and aborts it afterwards. Wraps `mdb_txn_begin` with
    /// `MDB_RDONLY` and `mdb_txn_abort`. Values seen through `txn` are valid only inside `body`.
    package func read<R>(_ body: (borrowing LMDBTransaction) throws -> R) throws -> R {
        while true {
            do {
                return try gate.shared {
                    let txn = try beginReadTransaction()
                    defer { mdb_txn_abort(txn) }
                    return try body(LMDBTransaction.make(txn, isReadOnly: true))
                }
            } catch is MapResizedByAnotherProcess {
                // Only a read-only environment sees this (in a writable one this process is the
                // only writer, and its own resizes do not trigger it), so the writer mutex is
                // free and keeps concurrent adopters apart.
                try writer.withLock { _ throws(LMDBError) in try adoptResizedMap() }
            }
        }
    }

    private struct MapResizedByAnotherProcess: Error {}

    /// A read transaction that ends with `mdb_txn_commit`, which is what makes database handles
    /// opened inside it permanent.
    private func readCommitting<R>(_ body: (borrowing LMDBTransaction) throws(LMDBError) -> R) throws(LMDBError) -> R {
        var txn: OpaquePointer?
        try LMDBError.check(
            mdb_txn_begin(handle, nil, UInt32(MDB_RDONLY), &txn), "beginning a read transaction in \(path)")
        guard let txn else { throw LMDBError(EINVAL, "beginning a read transaction in \(path)") }
        let result: R
        do {
            result = try body(LMDBTransaction.make(txn, isReadOnly: true))
        } catch {
            mdb_txn_abort(txn)
            throw error
        }
        try LMDBError.check(mdb_txn_commit(txn), "ending a read transaction")
        return result
    }

    private func beginReadTransaction() throws -> OpaquePointer {
        var txn: OpaquePointer?
        let rc = mdb_txn_begin(handle, nil, UInt32(MDB_RDONLY), &txn)
        // Another process grew the map: adopting its size needs no transaction open in this
        // process, which the caller's shared hold on the gate prevents, so `read` retries.
        if rc == MDB_MAP_RESIZED && configuration.readOnly { throw MapResizedByAnotherProcess() }
        try LMDBError.check(rc, "beginning a read transaction in \(path)")
        guard let txn else { throw LMDBError(EINVAL, "beginning a read transaction in \(path)") }
        return txn
    }

    /// Runs `body` in a write transaction, serialised with every other write of this process,
    /// and commits when `body` returns (one durable sync) or aborts when it throws. Wraps
    /// `mdb_txn_begin`, `mdb_txn_commit` and `mdb_txn_abort`.
    ///
    /// On `MDB_MAP_FULL` (from `body` or from the commit) the map doubles and `body` runs again;
    /// `body` must therefore let an `LMDBError` with that code propagate, and must not have
    /// effects outside the transaction.
    package func write<R>(_ body: (borrowing LMDBTransaction) throws -> R) throws -> R {
        if configuration.readOnly { throw LMDBError(EACCES, "write transaction in the read-only environment \(path)") }
        var result: R?
        try writer.withLock { _ in
            while true {
                var txn: OpaquePointer?
                var rc = mdb_txn_begin(handle, nil, 0, &txn)
                if rc == MDB_MAP_RESIZED {
                    try adoptResizedMap()
                    rc = mdb_txn_begin(handle, nil, 0, &txn)
                }
                try LMDBError.check(rc, "beginning a write transaction in \(path)")
                guard let txn else { throw LMDBError(EINVAL, "beginning a write transaction in \(path)") }
                let value: R
                do {
                    value = try body(LMDBTransaction.make(txn, isReadOnly: false))
                } catch let error as LMDBError where error.code == MDB_MAP_FULL {
                    mdb_txn_abort(txn)
                    try grow(after: error)
                    continue
                } catch {
                    mdb_txn_abort(txn)
                    throw error
                }
                // mdb_txn_commit frees the transaction whether or not it succeeds.
                let commit = mdb_txn_commit(txn)
                if commit == MDB_MAP_FULL {
                    try grow(after: LMDBError(commit, "committing a write transaction in \(path)"))
                    continue
                }
                try LMDBError.check(commit, "committing a write transaction in \(path)")
                result = value
                return
            }
        }
        guard let result else { throw LMDBError(EINVAL, "write transaction in \(path) produced no result") }
        return result
    }

    /// Flushes buffers to disk (`mdb_env_sync` with force). Needed only with `noSync`.
    package func sync() throws(LMDBError) {
        try LMDBError.check(mdb_env_sync(handle, 1), "syncing \(path)")
    }

    /// Doubles the map. Called with the writer mutex held and no write transaction open; waits
    /// for read transactions of this process to end.
    private func grow(after error: LMDBError) throws(LMDBError) {
        clearStaleReaders()
        let current = mapSize
        guard current < configuration.maxMapSize else {
            throw LMDBError(error.code, "the map of \(path) reached its limit of \(configuration.maxMapSize) bytes")
        }
        let next = min(
            current.multipliedReportingOverflow(by: 2).overflow ? Int.max : current * 2, configuration.maxMapSize)
        try gate.exclusive { () throws(LMDBError) in
            try LMDBError.check(mdb_env_set_mapsize(handle, next), "growing the map of \(path) to \(next) bytes")
        }
        currentMapSize.store(next, ordering: .relaxed)
    }

    /// Adopts a map size that another process set (`mdb_env_set_mapsize(env, 0)`), with the
    /// writer mutex held and no write transaction open.
    private func adoptResizedMap() throws(LMDBError) {
        try gate.exclusive { () throws(LMDBError) in
            try LMDBError.check(mdb_env_set_mapsize(handle, 0), "adopting the map size of \(path)")
        }
        var info = MDB_envinfo()
        mdb_env_info(handle, &info)
        currentMapSize.store(info.me_mapsize, ordering: .relaxed)
    }
}
