extension HTTPAPIServer {
    /// How an `HTTPAPIServer` listens and what it bounds. The defaults are those of the contract
    /// (`../shared/CONTRACT.md` section 2: no request waits more than 10 seconds).
    package struct Configuration: Sendable {
        /// Host to bind, e.g. "127.0.0.1" or "0.0.0.0".
        package var host: String
        /// Port to bind; 0 picks a free one, which `HTTPAPIServer.port` reports.
        package var port: Int
        /// A request whose service call has not answered after this long gets a 504.
        package var requestDeadline: Duration = .seconds(10)
        /// Largest body of `PUT /v1/memory` (413 beyond it).
        package var maximumMemoryBodyBytes: Int = 16 << 20
        /// Largest body of any other request, JSON (413 beyond it).
        package var maximumJSONBodyBytes: Int = 64 << 10
        /// Largest `len` of `GET /v1/memory`, largest `count` of `GET /v1/pages`, longest lock name.
        package var routeLimits = APIRoute.Limits(
            maximumReadLength: 16 << 20, maximumPageCount: 65_536, maximumLockNameBytes: 256)
        /// Service calls running at once across all connections (503 `overloaded` beyond it).
        package var maximumConcurrentRequests: Int = 1024
        /// Pipelined requests of one connection whose calls run at once; with this many answers
        /// outstanding the connection is not read until one is written.
        package var maximumPipelinedRequests: Int = 64
        /// A connection on which the client sends nothing for this long, between requests or in
        /// the middle of one, is closed (a call in flight is bounded by `requestDeadline` instead).
        package var idleTimeout: Duration = .seconds(60)
        /// How long `shutdown()` lets in-flight requests finish before closing their connections.
        package var shutdownGracePeriod: Duration = .seconds(10)

        package init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }
}
