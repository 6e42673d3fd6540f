import Logging
import Metrics
import NIOCore
import NIOHTTP1

/// The per-connection handler of the HTTP API, behind NIO's HTTP/1.1 server pipeline.
///
/// It parses the route from the request head, gathers the body up to the route's limit (answering
/// 413 and closing the connection the moment a body passes it), then calls the `NodeService` from a
/// `Task` and writes the answer back on the channel's event loop. A timer on the event loop races
/// every call: whichever of the answer and the deadline comes first is written, the other dropped,
/// and a call that lost the race is cancelled. `HTTPServerPipelineHandler` in front of it holds
/// pipelined requests (and stops reading) until the current answer is written, which keeps answers
/// in request order and one call per connection at a time.
///
/// All state is touched on the channel's event loop only; tasks reach it through `NIOLoopBound`.
final class HTTPAPIHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// What the server shares with every connection.
    struct Shared: Sendable {
        var responder: APIResponder
        var configuration: HTTPAPIServer.Configuration
        var limiter: RequestLimiter
        var logger: Logger
        /// Where the request counters and timers go.
        var metrics: any MetricsFactory
    }

    private struct IncomingRequest {
        var head: HTTPRequestHead
        var route: APIRoute
        var body: ByteBuffer
        var limit: Int
    }

    private enum State {
        /// Waiting for a request head.
        case idle
        /// Gathering the body of a request.
        case receiving(IncomingRequest)
        /// The head already decided the answer (404, 405, 400): it is written once the body,
        /// which is discarded, has ended.
        case rejected(HTTPRequestHead, APIResponse)
        /// The service call `id` runs; its answer or the deadline comes next.
        case responding(id: UInt64, head: HTTPRequestHead)
        /// An answer that closes the connection was written; everything else is ignored.
        case closing
    }

    private let shared: Shared
    private var state = State.idle
    private var nextRequestID: UInt64 = 0
    /// The running call: its task (none for a call answered by callback) and its deadline.
    private var inFlight: (task: Task<Void, Never>?, timer: Scheduled<Void>)?
    /// The endpoint and arrival time of the request being answered, for the request metrics.
    private var measured: (endpoint: String, start: NIODeadline)?

    init(shared: Shared) {
        self.shared = shared
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            receiveHead(head, context: context)
        case .body(var chunk):
            guard case .receiving(var request) = state else { return }  // discarded
            guard request.body.readableBytes + chunk.readableBytes <= request.limit else {
                rejectOversized(request.head, limit: request.limit, context: context)
                return
            }
            state = .idle  // drop the enum's reference so that appending does not copy the buffer
            request.body.writeBuffer(&chunk)
            state = .receiving(request)
        case .end:
            switch state {
            case .receiving(let request):
                dispatch(request, context: context)
            case .rejected(let head, let response):
                state = .idle
                write(response, for: head, context: context)
            case .idle, .responding, .closing:
                break
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Nobody is left to answer: stop the call (a write may or may not take effect, as the
        // contract allows for any request that got no answer).
        if let inFlight {
            inFlight.timer.cancel()
            inFlight.task?.cancel()
        }
        inFlight = nil
        state = .closing
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        switch state {
        case .idle, .receiving, .rejected:
            // Nothing arrived for the idle timeout while the client had the turn (between requests,
            // or in the middle of one): free the connection.
            context.close(promise: nil)
            state = .closing
        case .responding, .closing:
            // While a call runs, reading is paused on purpose; the request deadline bounds it.
            break
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is HTTPParserError {
            // Bytes that are not HTTP: answer 400 if no answer is pending, then close (the decoder
            // cannot find the next request boundary). The server itself is unaffected.
            switch state {
            case .idle, .receiving, .rejected:
                let response = APIResponse.error(.badRequest("malformed HTTP request: \(error)"))
                let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
                write(response, for: head, closeAfter: true, context: context)
            case .responding, .closing:
                context.close(promise: nil)
            }
        } else {
            shared.logger.debug("HTTP connection error", metadata: ["error": "\(error)"])
            context.close(promise: nil)
        }
        state = .closing
    }

    // MARK: - Requests

    private func receiveHead(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard case .idle = state else { return }
        let configuration = shared.configuration
        let route: APIRoute
        measured = ("none", .now())
        do {
            route = try APIRoute.parse(method: head.method, uri: head.uri, limits: configuration.routeLimits)
            measured?.endpoint = route.endpoint
        } catch {
            var headers = HTTPHeaders()
            if error.status == 405 {
                let allowed = APIRoute.allowedMethods(for: head.uri, limits: configuration.routeLimits)
                headers.add(name: "allow", value: allowed.map(\.rawValue).joined(separator: ", "))
            }
            if expectsContinue(head) {
                // The client holds its body back until told to send it: answer now instead, and
                // close, since the body it may still send cannot be told apart from a next request.
                write(.error(error, headers: headers), for: head, closeAfter: true, context: context)
                state = .closing
            } else {
                state = .rejected(head, .error(error, headers: headers))
            }
            return
        }
        let limit = route.takesRawBody ? configuration.maximumMemoryBodyBytes : configuration.maximumJSONBodyBytes
        let declaredLength = head.headers.first(name: "content-length").flatMap { Int($0) }
        if let declaredLength, declaredLength > limit {
            // Refused before a byte of the body is read.
            rejectOversized(head, limit: limit, context: context)
            return
        }
        if expectsContinue(head) {
            let interim = HTTPResponseHead(version: head.version, status: .continue)
            context.writeAndFlush(wrapOutboundOut(.head(interim)), promise: nil)
        }
        let capacity = min(declaredLength ?? 0, limit)
        let body = context.channel.allocator.buffer(capacity: capacity)
        state = .receiving(IncomingRequest(head: head, route: route, body: body, limit: limit))
    }

    private func expectsContinue(_ head: HTTPRequestHead) -> Bool {
        head.headers[canonicalForm: "expect"].contains { $0.lowercased() == "100-continue" }
    }

    private func rejectOversized(_ head: HTTPRequestHead, limit: Int, context: ChannelHandlerContext) {
        // The rest of the body is still on its way; rather than read and drop it, close.
        let error = APIError.tooLarge("the body is larger than the limit of \(limit) bytes for this endpoint")
        write(.error(error), for: head, closeAfter: true, context: context)
        state = .closing
    }

    private func dispatch(_ request: IncomingRequest, context: ChannelHandlerContext) {
        let id = nextRequestID
        nextRequestID &+= 1
        let limiter = shared.limiter
        guard limiter.tryAcquire() else {
            state = .idle
            let error = APIError.overloaded("too many requests in flight; retry later")
            write(.error(error), for: request.head, context: context)
            return
        }
        state = .responding(id: id, head: request.head)

        let eventLoop = context.eventLoop
        let handler = NIOLoopBound(self, eventLoop: eventLoop)
        let boundContext = NIOLoopBound(context, eventLoop: eventLoop)
        let responder = shared.responder
        let route = request.route
        let body = Array(request.body.readableBytesView)
        // Memory writes and reads are answered by a callback (no task, no hop through the
        // concurrency pool); everything else runs in a task.
        let direct = responder.respondWithoutTask(to: route, body: body) { response in
            limiter.release()
            eventLoop.execute {
                handler.value.finish(id: id, with: response, timedOut: false, context: boundContext.value)
            }
        }
        let task: Task<Void, Never>? =
            direct
            ? nil
            : Task {
                let response = await responder.respond(to: route, body: body)
                limiter.release()
                eventLoop.execute {
                    handler.value.finish(id: id, with: response, timedOut: false, context: boundContext.value)
                }
            }
        let deadline = shared.configuration.requestDeadline
        let timer = eventLoop.scheduleTask(in: TimeAmount(deadline)) {
            let error = APIError.timeout("no answer within \(deadline); a write may or may not have taken effect")
            handler.value.finish(id: id, with: .error(error), timedOut: true, context: boundContext.value)
        }
        inFlight = (task, timer)
    }

    /// Writes the answer of call `id` if it is still the one awaited; a late second arrival (the
    /// answer after the deadline, or the deadline after the answer) is dropped.
    private func finish(id: UInt64, with response: APIResponse, timedOut: Bool, context: ChannelHandlerContext) {
        guard case .responding(let current, let head) = state, current == id else { return }
        if let inFlight {
            inFlight.timer.cancel()
            if timedOut { inFlight.task?.cancel() }
        }
        inFlight = nil
        state = .idle
        write(response, for: head, context: context)
    }

    // MARK: - Answers

    private func write(
        _ response: APIResponse, for request: HTTPRequestHead, closeAfter: Bool = false,
        context: ChannelHandlerContext
    ) {
        let keepAlive = request.isKeepAlive && !closeAfter
        var headers = response.headers
        headers.replaceOrAdd(name: "content-type", value: response.contentType)
        headers.replaceOrAdd(name: "content-length", value: String(response.body.count))
        if !keepAlive {
            headers.replaceOrAdd(name: "connection", value: "close")
        } else if request.version.major == 1 && request.version.minor == 0 {
            headers.replaceOrAdd(name: "connection", value: "keep-alive")
        }
        // Counted before the bytes leave, so that a client that has its answer sees it counted.
        if let measured {
            let endpoint = measured.endpoint
            Counter(
                label: "gallocy_http_requests_total",
                dimensions: [("endpoint", endpoint), ("status", String(response.status.code))],
                factory: shared.metrics
            ).increment()
            Metrics.Timer(
                label: "gallocy_http_request_duration_seconds", dimensions: [("endpoint", endpoint)],
                factory: shared.metrics
            ).recordNanoseconds((NIODeadline.now() - measured.start).nanoseconds)
            self.measured = nil
        }
        let version = request.version.major == 1 && request.version.minor == 0 ? HTTPVersion.http1_0 : .http1_1
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: version, status: response.status, headers: headers))),
            promise: nil)
        if !response.body.isEmpty {
            var buffer = context.channel.allocator.buffer(capacity: response.body.count)
            buffer.writeBytes(response.body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            written.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
