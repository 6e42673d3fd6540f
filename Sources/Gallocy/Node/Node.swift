import GallocyCodec
import GallocyRaft
import GallocyStateMachine
import GallocyStorage
import Logging
import NIOCore
import NIOPosix
import Prometheus
import Synchronization

/// One member of a cluster: the data directory, the Raft driver, the peer transport and the
/// HTTP API, started in that order and stopped in the reverse one. `NodeService` (what the HTTP
/// API calls) is in `Node+Service.swift`.
package final class Node: Sendable {
    package let configuration: NodeConfiguration
    let logger: Logger
    let metrics: NodeMetrics
    let storage: RaftStorage
    let driver: RaftDriver
    private let servers = Mutex<(transport: PeerTransport?, http: HTTPAPIServer?)>((nil, nil))
    /// Why the member stops: nil while it runs.
    private let exit = Mutex<(reason: NodeError?, stopping: Bool, waiters: [CheckedContinuation<NodeError?, Never>])>(
        (nil, false, []))

    private init(configuration: NodeConfiguration, logger: Logger, metrics: NodeMetrics, storage: RaftStorage, driver: RaftDriver) {
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
        self.storage = storage
        self.driver = driver
    }

    /// Opens the data directory (bootstrapping it on a founding member's first start), rebuilds
    /// the state machine from the snapshot, and starts the driver, the transport and the HTTP API.
    ///
    /// `makeHeap` makes the heap image once the cluster's settings are known: by default a
    /// private mapping; an in-process member (`Member`) passes one over its runtime heap.
    package static func start(
        _ configuration: NodeConfiguration, logger: Logger, makeHeap: StateMachine.HeapFactory? = nil
    ) async throws(NodeError) -> Node {
        let storage: RaftStorage
        do {
            storage = try RaftStorage(path: configuration.dataDirectory)
        } catch {
            if error.code == .inUse { throw NodeError(.dataDirectoryInUse, error.message) }
            throw NodeError(.storage, "cannot open the data directory \(configuration.dataDirectory): \(error.message)")
        }
        let fresh = storage.lastIndex == 0 && storage.snapshot == nil && storage.hardState == .empty
        if fresh && !configuration.join {
            // A founding member: the log starts with a snapshot at index 1 that holds the
            // initial membership (docs/raft.md); the settings follow as the first command.
            let voters = ([configuration.id] + configuration.peers.keys).sorted()
            do {
                // Its data is the snapshot of an empty state machine, so that every snapshot in
                // a data directory restores (the log tool checks that).
                let empty = try StateMachine(company: 0)
                _ = try empty.apply(Entry(term: 1, index: 1))  // the snapshot's own index, as an empty entry
                let bytes = try empty.snapshot()
                try storage.saveSnapshot(
                    SnapshotMetadata(index: 1, term: 1, confState: ConfState(voters: voters)), data: bytes,
                    replacingLog: true)
            } catch let error as StorageError {
                throw NodeError(.storage, "cannot bootstrap the data directory: \(error.message)")
            } catch {
                throw NodeError(.stateMachine, "cannot make the bootstrap snapshot: \(error)")
            }
            logger.info("bootstrapped a new data directory", metadata: ["members": "\(voters)"])
        }
        try repairCompaction(storage)
        if let wanted = configuration.heapSize, let recorded = storage.settings, recorded.heapSize != wanted {
            throw NodeError(
                .settingsConflict,
                "the data directory's cluster has a heap size of \(recorded.heapSize) bytes but --heap-size asks for "
                    + "\(wanted); start without --heap-size or with the cluster's value")
        }
        let machine: StateMachine
        do {
            machine = try makeHeap.map { try StateMachine(company: 0, makeHeap: $0) } ?? StateMachine(company: 0)
            if storage.snapshot != nil, let (_, data) = try storage.readSnapshot(), !data.isEmpty {
                try machine.restore(from: data)
            }
        } catch let error as StorageError {
            throw NodeError(.storage, "cannot read the snapshot in \(configuration.dataDirectory): \(error.message)")
        } catch {
            throw NodeError(.stateMachine, "cannot rebuild the state machine from the snapshot: \(error)")
        }

        let metrics = NodeMetrics()
        let stopBox = StopBox()
        let driver = RaftDriver(
            configuration: configuration, storage: storage, machine: machine, logger: logger, metrics: metrics,
            onFatal: { error in stopBox.node?.requestStop(error) })
        let node = Node(configuration: configuration, logger: logger, metrics: metrics, storage: storage, driver: driver)
        stopBox.node = node

        let transport: PeerTransport
        do {
            transport = try await PeerTransport.start(
                configuration: TransportConfiguration(
                    id: configuration.id, listen: configuration.listen, clusterID: storage.settings?.clusterID ?? 0,
                    secret: configuration.secret),
                logger: Logger(label: "gallocy.transport", factory: { _ in logger.handler }),
                onMessage: { [driver] message in driver.enqueue(message) })
        } catch {
            throw NodeError(.network, "cannot listen for peers on \(configuration.listen): \(error)")
        }
        if !transport.authenticatesPeers {
            logger.warning("no --secret-file: peers are accepted without authentication")
        }
        for (peer, address) in configuration.peers where peer != configuration.id {
            transport.setPeer(id: peer, address: address)
        }
        driver.transport = transport
        driver.refreshPeersFromMembers()
        node.servers.withLock { $0.transport = transport }
        driver.start()

        do {
            var http = HTTPAPIServer.Configuration(host: configuration.httpHost, port: configuration.httpPort)
            http.requestDeadline = .seconds(10)
            let server = try await HTTPAPIServer.start(
                service: node, configuration: http,
                logger: Logger(label: "gallocy.http", factory: { _ in logger.handler }),
                metrics: PrometheusMetricsFactory(registry: metrics.registry))
            node.servers.withLock { $0.http = server }
        } catch {
            await node.shutdown()
            throw NodeError(.network, "cannot serve HTTP on \(configuration.httpHost):\(configuration.httpPort): \(error)")
        }
        logger.info(
            "member started",
            metadata: [
                "id": "\(configuration.id)", "listen": "\(configuration.listen)",
                "http": "\(configuration.httpHost):\(configuration.httpPort)",
                "applied": "\(driver.view.appliedIndex)",
            ])
        return node
    }

    /// A crash between writing a snapshot and compacting the log can leave membership changes
    /// between the compaction point and the snapshot; the core would apply them twice on top of
    /// the snapshot's membership. Compacting through the snapshot removes them.
    static func repairCompaction(_ storage: RaftStorage) throws(NodeError) {
        guard let snapshot = storage.snapshot?.metadata, storage.compactedIndex < snapshot.index else { return }
        do {
            let between = try storage.entries(from: storage.compactedIndex + 1, to: snapshot.index + 1)
            if between.contains(where: { $0.kind == .confChange }) { try storage.compact(through: snapshot.index) }
        } catch {
            throw NodeError(.storage, "cannot read the log below the snapshot: \(error.message)")
        }
    }

    /// Asks the member to stop: nil for a signal (exit 0), an error for a fatal condition.
    package func requestStop(_ reason: NodeError?) {
        let waiters = exit.withLock { state -> [CheckedContinuation<NodeError?, Never>] in
            guard !state.stopping else { return [] }
            state.stopping = true
            state.reason = reason
            let w = state.waiters
            state.waiters = []
            return w
        }
        for waiter in waiters { waiter.resume(returning: reason) }
    }

    /// Whether `requestStop` was called.
    package var isStopping: Bool { exit.withLock { $0.stopping } }

    /// Returns when `requestStop` was called, with its reason.
    package func waitUntilStopRequested() async -> NodeError? {
        await withCheckedContinuation { continuation in
            let ready = exit.withLock { state -> NodeError?? in
                if state.stopping { return .some(state.reason) }
                state.waiters.append(continuation)
                return .none
            }
            if let reason = ready { continuation.resume(returning: reason) }
        }
    }

    /// Stops the HTTP API, the transport and the driver; the storage closes when the node goes.
    package func shutdown() async {
        let (transport, http) = servers.withLock { s in
            let taken = s
            s = (nil, nil)
            return taken
        }
        await http?.shutdown()
        driver.stop()
        await transport?.shutdown()
        logger.info("member stopped")
    }
}

/// Lets the driver's fatal callback reach the node created after it.
/// `@unchecked Sendable`: `node` is set once, before the driver thread starts, and only read after.
private final class StopBox: @unchecked Sendable {
    weak var node: Node?
}
