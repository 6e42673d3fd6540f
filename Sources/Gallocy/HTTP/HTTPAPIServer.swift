import Logging
import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix

/// The HTTP API of a member (`../shared/CONTRACT.md` section 2), served over HTTP/1.1 with SwiftNIO.
///
/// It only translates: every endpoint is parsed, checked and answered here, and the work is done
/// by the `NodeService` it is given. Bodies, waits and concurrent calls are bounded (see
/// `Configuration`); keep-alive and pipelining are supported, with answers in request order.
///
/// ```swift
/// let server = try await HTTPAPIServer.start(service: node, configuration: .init(host: "127.0.0.1", port: 8080))
/// print(server.port)
/// await server.shutdown()
/// ```
package final class HTTPAPIServer: Sendable {
    /// The address the server is bound to.
    package let localAddress: SocketAddress
    private let serverChannel: any Channel
    private let registry: HTTPConnectionRegistry
    private let limiter: RequestLimiter
    private let configuration: Configuration
    private let logger: Logger

    /// The bound port: the configured one, or the one the system picked for port 0.
    package var port: Int { localAddress.port ?? configuration.port }

    private init(
        localAddress: SocketAddress, serverChannel: any Channel, registry: HTTPConnectionRegistry,
        limiter: RequestLimiter, configuration: Configuration, logger: Logger
    ) {
        self.localAddress = localAddress
        self.serverChannel = serverChannel
        self.registry = registry
        self.limiter = limiter
        self.configuration = configuration
        self.logger = logger
    }

    /// Binds `configuration.host:port` and starts serving `service`. Throws if the address cannot
    /// be bound (in use, bad host).
    ///
    /// - Parameters:
    ///   - group: the event loops for the listener and its connections; the caller owns it and must
    ///     keep it running until `shutdown()` has returned.
    ///   - metrics: where the counters `gallocy_http_requests_total{endpoint,status}` and timers
    ///     `gallocy_http_request_duration_seconds{endpoint}` go; nil means the global
    ///     `MetricsSystem.factory`.
    package static func start(
        service: any NodeService,
        configuration: Configuration,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "gallocy.http"),
        metrics: (any MetricsFactory)? = nil
    ) async throws -> HTTPAPIServer {
        let registry = HTTPConnectionRegistry()
        let limiter = RequestLimiter(limit: configuration.maximumConcurrentRequests)
        let shared = HTTPAPIHandler.Shared(
            responder: APIResponder(service: service), configuration: configuration, limiter: limiter,
            logger: logger, instruments: HTTPInstruments(factory: metrics ?? MetricsSystem.factory))
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                guard registry.register(channel) else {
                    return channel.close()
                }
                return channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(IdleStateHandler(readTimeout: TimeAmount(configuration.idleTimeout)))
                    // Our handler answers malformed HTTP itself (as JSON), so NIO's error handler is off;
                    // it also does its own pipelining (concurrent calls, answers in order), so NIO's
                    // one-request-at-a-time pipelining handler is off too.
                    // Response header validation is off too: every header is written by HTTPAPIHandler from
                    // fixed names and values it made itself.
                    try pipeline.configureHTTPServerPipeline(
                        withPipeliningAssistance: false, withErrorHandling: false, withOutboundHeaderValidation: false)
                    try pipeline.addHandler(HTTPAPIHandler(shared: shared))
                }
            }
        let channel = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        guard let localAddress = channel.localAddress else {
            try? await channel.close()
            throw APIError.unavailable("the HTTP listener has no local address")
        }
        logger.info("HTTP API listening", metadata: ["address": "\(localAddress)"])
        return HTTPAPIServer(
            localAddress: localAddress, serverChannel: channel, registry: registry, limiter: limiter,
            configuration: configuration, logger: logger)
    }

    /// Stops accepting connections, lets the requests in flight finish (for at most
    /// `shutdownGracePeriod`), closes idle connections at once and the rest after their answer,
    /// and returns when all are closed. Calling it again is harmless.
    package func shutdown() async {
        try? await serverChannel.close()
        for channel in registry.close() {
            // HTTPAPIHandler closes an idle connection now, a busy one after its last answer
            // (with `connection: close`).
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
        let connections = registry.open
        let limiter = self.limiter
        let grace = configuration.shutdownGracePeriod
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for channel in connections {
                    try? await channel.closeFuture.get()
                }
                // Calls whose connection is gone may still be running; give them the same grace.
                while limiter.current > 0 && !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(5))
                }
            }
            group.addTask {
                try? await Task.sleep(for: grace)
            }
            await group.next()
            // Past the grace period (or done): whatever is still open is closed now.
            for channel in registry.open {
                channel.close(promise: nil)
            }
            group.cancelAll()
        }
        logger.info("HTTP API stopped", metadata: ["address": "\(localAddress)"])
    }
}
