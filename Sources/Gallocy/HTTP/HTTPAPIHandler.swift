import Logging
import Metrics
import NIOCore
import NIOHTTP1
import Synchronization

/// The per-connection handler of the HTTP API, behind NIO's HTTP/1.1 codec. It does its own
/// pipelining (NIO's `HTTPServerPipelineHandler`, which runs one request per connection at a time,
/// is not used).
///
/// It parses the route from each request head, gathers the body up to the route's limit (answering
/// 413 and closing the connection the moment a body passes it), then calls the `NodeService` (by
/// callback, or from a `Task`) and writes the answer back on the channel's event loop. Pipelined
/// requests run concurrently, up to `maximumPipelinedRequests` per connection; their answers are
/// written strictly in request order (a quick answer waits for the slower ones before it). When
/// that many answers are outstanding the handler stops reading from the socket, so a connection
/// buffers at most the cap plus one read's worth of requests. Answers that become ready together
/// (one read burst, or the calls that one driver turn completed) go out in one flush.
///
/// Every call races its deadline (one event-loop timer per connection, armed for the earliest):
/// whichever of the answer and the deadline comes first is written, the other dropped, and a call
/// that lost the race is cancelled.
///
/// All state is touched on the channel's event loop only; answers from other threads come back
/// through a locked inbox that is drained by one event-loop task per batch.
final class HTTPAPIHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// What the server shares with every connection.
    struct Shared: Sendable {
        var responder: APIResponder
        var configuration: HTTPAPIServer.Configuration
        var limiter: RequestLimiter
        var logger: Logger
        /// The request counters and timers, made once per label set in the server's metrics
        /// factory.
        var instruments: HTTPInstruments
    }

    private struct IncomingRequest {
        var head: HTTPRequestHead
        var route: APIRoute
        var body: ByteBuffer
        var limit: Int
    }

    /// What the handler does with the next request parts.
    private enum Input {
        /// Waiting for a request head.
        case idle
        /// Gathering the body of a request.
        case receiving(IncomingRequest)
        /// The head already decided the answer (404, 405, 400): it is queued once the body, which
        /// is discarded, has ended.
        case rejected(HTTPRequestHead, APIResponse)
        /// No further request is taken on this connection (an answer that closes it is queued or
        /// written); everything read is ignored.
        case closing
    }

    /// One request whose answer has not been written yet, in request order.
    private struct Slot {
        enum Stage {
            /// Parsed, waiting for one of the connection's call slots.
            case waiting(APIRoute, [UInt8])
            /// The service call runs until `deadline`; `task` is nil for a call answered by callback.
            case running(task: Task<Void, Never>?, deadline: NIODeadline)
            /// The answer, to be written once every earlier one has been.
            case ready(APIResponse)
        }

        var id: UInt64
        var head: HTTPRequestHead
        var stage: Stage
        /// The endpoint and arrival time, for the request metrics; nil for an interim answer.
        var measured: (endpoint: String, start: NIODeadline)?
        /// The connection is closed once this answer is written.
        var closeAfter = false
        /// A `100 Continue` interim answer (a head only).
        var interim = false
    }

    /// Answers that arrive from other threads, drained on the event loop.
    private final class Inbox: Sendable {
        private let answers = Mutex<[(UInt64, APIResponse)]>([])

        /// Adds an answer; true if the inbox was empty (the caller then schedules a drain).
        func push(_ id: UInt64, _ response: APIResponse) -> Bool {
            answers.withLock { answers in
                answers.append((id, response))
                return answers.count == 1
            }
        }

        func take() -> [(UInt64, APIResponse)] {
            answers.withLock { answers in
                defer { answers.removeAll(keepingCapacity: true) }
                return answers
            }
        }
    }

    private let shared: Shared
    private let maximumPipelined: Int
    private var input = Input.idle
    private var slots = CircularBuffer<Slot>(initialCapacity: 16)
    private var nextID: UInt64 = 0
    /// Calls of this connection running now.
    private var running = 0
    private let inbox = Inbox()
    /// Answers were written since the last flush.
    private var needsFlush = false
    /// A `read` held back because `maximumPipelined` answers are outstanding.
    private var readHeld = false
    /// Shutdown asked this connection to finish what it has and close.
    private var quiescing = false
    private var closed = false
    /// One timer per connection, armed for the earliest deadline of its running calls (calls
    /// start in request order with the same deadline, so that is the oldest running one); when
    /// it fires it answers 504 for every call past its deadline and re-arms for the next. An
    /// answer does not cancel it: a timer per call cost a heap insertion and removal in the
    /// event loop's scheduler for every request.
    private var deadlineTimer: Scheduled<Void>?

    init(shared: Shared) {
        self.shared = shared
        self.maximumPipelined = max(1, shared.configuration.maximumPipelinedRequests)
    }

    // MARK: - Events

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            receiveHead(head, context: context)
        case .body(var chunk):
            guard case .receiving(var request) = input else { return }  // discarded
            guard request.body.readableBytes + chunk.readableBytes <= request.limit else {
                rejectOversized(request.head, limit: request.limit, context: context)
                return
            }
            input = .idle  // drop the enum's reference so that appending does not copy the buffer
            request.body.writeBuffer(&chunk)
            input = .receiving(request)
        case .end:
            switch input {
            case .receiving(let request):
                input = request.head.isKeepAlive ? .idle : .closing
                let measured = (request.route.endpoint, NIODeadline.now())
                let body = Array(request.body.readableBytesView)
                append(Slot(id: 0, head: request.head, stage: .waiting(request.route, body), measured: measured))
                startWaiting(context: context)
            case .rejected(let head, let response):
                input = head.isKeepAlive ? .idle : .closing
                append(Slot(id: 0, head: head, stage: .ready(response), measured: ("none", .now())))
                writeReady(context: context)
            case .idle, .closing:
                break
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded(context: context)
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if slots.count >= maximumPipelined {
            readHeld = true
        } else {
            context.read()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Nobody is left to answer: stop the calls (a write may or may not take effect, as the
        // contract allows for any request that got no answer).
        closed = true
        cancelCalls()
        input = .closing
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            quiescing = true
            if slots.isEmpty, !isReceiving {
                closeNow(context: context)
            } else if case .idle = input {
                input = .closing  // no new request; the last queued answer closes the connection
            }
            return
        }
        guard let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        // While calls run, reading may be held on purpose; the request deadline bounds them.
        // Otherwise nothing arrived for the idle timeout while the client had the turn (between
        // requests, or in the middle of one): free the connection.
        if slots.isEmpty {
            closeNow(context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is HTTPParserError {
            // Bytes that are not HTTP: answer 400 after the answers already due, then close (the
            // decoder cannot find the next request boundary). The server itself is unaffected.
            if case .closing = input {
                if slots.isEmpty { closeNow(context: context) }
                return
            }
            input = .closing
            let response = APIResponse.error(.badRequest("malformed HTTP request: \(error)"))
            let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
            append(Slot(id: 0, head: head, stage: .ready(response), measured: ("none", .now()), closeAfter: true))
            writeReady(context: context)
            flushIfNeeded(context: context)
        } else {
            shared.logger.debug("HTTP connection error", metadata: ["error": "\(error)"])
            input = .closing
            closeNow(context: context)
        }
    }

    // MARK: - Requests

    private var isReceiving: Bool {
        switch input {
        case .receiving, .rejected: true
        case .idle, .closing: false
        }
    }

    private func append(_ slot: Slot) {
        var slot = slot
        slot.id = nextID
        nextID &+= 1
        slots.append(slot)
    }

    private func receiveHead(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard case .idle = input, !quiescing else { return }
        let configuration = shared.configuration
        let route: APIRoute
        do {
            route = try APIRoute.parse(method: head.method, uri: head.uri, limits: configuration.routeLimits)
        } catch {
            var headers = HTTPHeaders()
            if error.status == 405 {
                let allowed = APIRoute.allowedMethods(for: head.uri, limits: configuration.routeLimits)
                headers.add(name: "allow", value: allowed.map(\.rawValue).joined(separator: ", "))
            }
            if expectsContinue(head) {
                // The client holds its body back until told to send it: answer now instead, and
                // close, since the body it may still send cannot be told apart from a next request.
                input = .closing
                append(
                    Slot(
                        id: 0, head: head, stage: .ready(.error(error, headers: headers)), measured: ("none", .now()),
                        closeAfter: true))
                writeReady(context: context)
                flushIfNeeded(context: context)
            } else {
                input = .rejected(head, .error(error, headers: headers))
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
            // In order: after the answers to the requests before it.
            append(Slot(id: 0, head: head, stage: .ready(APIResponse.done), measured: nil, interim: true))
            writeReady(context: context)
            flushIfNeeded(context: context)
        }
        let capacity = min(declaredLength ?? 0, limit)
        let body = context.channel.allocator.buffer(capacity: capacity)
        input = .receiving(IncomingRequest(head: head, route: route, body: body, limit: limit))
    }

    private func expectsContinue(_ head: HTTPRequestHead) -> Bool {
        head.headers[canonicalForm: "expect"].contains { $0.lowercased() == "100-continue" }
    }

    private func rejectOversized(_ head: HTTPRequestHead, limit: Int, context: ChannelHandlerContext) {
        // The rest of the body is still on its way; rather than read and drop it, close (after
        // the answers due before this one).
        let error = APIError.tooLarge("the body is larger than the limit of \(limit) bytes for this endpoint")
        let endpoint = (try? APIRoute.parse(method: head.method, uri: head.uri, limits: shared.configuration.routeLimits))?
            .endpoint ?? "none"
        input = .closing
        append(Slot(id: 0, head: head, stage: .ready(.error(error)), measured: (endpoint, .now()), closeAfter: true))
        writeReady(context: context)
        flushIfNeeded(context: context)
    }

    /// Starts the waiting calls, in request order, while fewer than the cap run.
    private func startWaiting(context: ChannelHandlerContext) {
        guard running < maximumPipelined else { return }
        var index = slots.startIndex
        while index != slots.endIndex && running < maximumPipelined {
            if case .waiting(let route, let body) = slots[index].stage {
                start(at: index, route: route, body: body, context: context)
            }
            index = slots.index(after: index)
        }
        writeReady(context: context)
    }

    private func start(at index: CircularBuffer<Slot>.Index, route: APIRoute, body: [UInt8], context: ChannelHandlerContext) {
        let limiter = shared.limiter
        guard limiter.tryAcquire() else {
            slots[index].stage = .ready(.error(.overloaded("too many requests in flight; retry later")))
            return
        }
        running += 1
        let id = slots[index].id
        let eventLoop = context.eventLoop
        let handler = NIOLoopBound(self, eventLoop: eventLoop)
        let boundContext = NIOLoopBound(context, eventLoop: eventLoop)
        let inbox = self.inbox
        let responder = shared.responder
        let deliver: @Sendable (APIResponse) -> Void = { response in
            limiter.release()
            if inbox.push(id, response) {
                eventLoop.execute { handler.value.drainInbox(context: boundContext.value) }
            }
        }
        // Memory writes and reads are answered by a callback (no task, no hop through the
        // concurrency pool); everything else runs in a task.
        let direct = responder.respondWithoutTask(to: route, body: body, done: deliver)
        let task: Task<Void, Never>? =
            direct
            ? nil
            : Task {
                deliver(await responder.respond(to: route, body: body))
            }
        let deadline = NIODeadline.now() + TimeAmount(shared.configuration.requestDeadline)
        slots[index].stage = .running(task: task, deadline: deadline)
        if deadlineTimer == nil { armDeadlineTimer(at: deadline, context: context) }
    }

    private func armDeadlineTimer(at deadline: NIODeadline, context: ChannelHandlerContext) {
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let boundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        deadlineTimer = context.eventLoop.scheduleTask(deadline: deadline) {
            handler.value.deadlinePassed(context: boundContext.value)
        }
    }

    /// Answers 504 for every running call past its deadline, then re-arms for the earliest left.
    private func deadlinePassed(context: ChannelHandlerContext) {
        deadlineTimer = nil
        guard !closed else { return }
        let now = NIODeadline.now()
        let limit = shared.configuration.requestDeadline
        var next: NIODeadline?
        var expired: [UInt64] = []
        for slot in slots {
            guard case .running(_, let deadline) = slot.stage else { continue }
            if deadline <= now {
                expired.append(slot.id)
            } else if next == nil || deadline < next! {
                next = deadline
            }
        }
        for id in expired {
            let error = APIError.timeout("no answer within \(limit); a write may or may not have taken effect")
            finish(id: id, with: .error(error), timedOut: true, context: context)
        }
        if let next { armDeadlineTimer(at: next, context: context) }
        startWaiting(context: context)
        flushIfNeeded(context: context)
    }

    /// Stops every running call and drops the queue (the connection is closing).
    private func cancelCalls() {
        for slot in slots {
            if case .running(let task, _) = slot.stage { task?.cancel() }
        }
        slots.removeAll()
        deadlineTimer?.cancel()
        deadlineTimer = nil
    }

    private func drainInbox(context: ChannelHandlerContext) {
        for (id, response) in inbox.take() {
            finish(id: id, with: response, timedOut: false, context: context)
        }
        startWaiting(context: context)
        flushIfNeeded(context: context)
    }

    /// Records the answer of call `id` if it is still awaited; a late second arrival (the answer
    /// after the deadline, or the deadline after the answer) is dropped.
    private func finish(id: UInt64, with response: APIResponse, timedOut: Bool, context: ChannelHandlerContext) {
        guard let first = slots.first, id >= first.id, id - first.id < UInt64(slots.count) else { return }
        let index = slots.index(slots.startIndex, offsetBy: Int(id - first.id))
        guard case .running(let task, _) = slots[index].stage else { return }
        if timedOut { task?.cancel() }
        running -= 1
        slots[index].stage = .ready(response)
    }

    // MARK: - Answers

    /// Writes the answers that are ready at the front of the queue (without flushing).
    private func writeReady(context: ChannelHandlerContext) {
        while !closed, let slot = slots.first, case .ready(let response) = slot.stage {
            slots.removeFirst()
            if slot.interim {
                let interim = HTTPResponseHead(version: slot.head.version, status: .continue)
                context.write(wrapOutboundOut(.head(interim)), promise: nil)
                needsFlush = true
                continue
            }
            let last = quiescing && slots.isEmpty && !isReceiving
            write(response, slot: slot, closeAfter: slot.closeAfter || last, context: context)
        }
        if readHeld && slots.count < maximumPipelined && !closed {
            readHeld = false
            context.read()
        }
    }

    private func flushIfNeeded(context: ChannelHandlerContext) {
        guard needsFlush else { return }
        needsFlush = false
        context.flush()
    }

    private func closeNow(context: ChannelHandlerContext) {
        guard !closed else { return }
        closed = true
        input = .closing
        flushIfNeeded(context: context)
        context.close(promise: nil)
    }

    private func write(_ response: APIResponse, slot: Slot, closeAfter: Bool, context: ChannelHandlerContext) {
        let request = slot.head
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
        if let measured = slot.measured {
            let instruments = shared.instruments
            instruments.counter(endpoint: measured.endpoint, status: Int(response.status.code)).increment()
            instruments.timer(endpoint: measured.endpoint)
                .recordNanoseconds((NIODeadline.now() - measured.start).nanoseconds)
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
        if keepAlive {
            context.write(wrapOutboundOut(.end(nil)), promise: nil)
            needsFlush = true
        } else {
            // Nothing after this answer: drop whatever is still queued and close once it is out.
            let channel = context.channel
            needsFlush = false
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
            input = .closing
            cancelCalls()
            closed = true
        }
    }
}

/// The request counters and timers of an `HTTPAPIServer`, made once per endpoint and status
/// rather than looked up in the metrics factory on every answer.
final class HTTPInstruments: Sendable {
    private let factory: any MetricsFactory
    private let counters = Mutex<[String: Counter]>([:])
    private let timers = Mutex<[String: Metrics.Timer]>([:])

    init(factory: any MetricsFactory) {
        self.factory = factory
    }

    func counter(endpoint: String, status: Int) -> Counter {
        let key = endpoint + " " + String(status)
        return counters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = Counter(
                label: "gallocy_http_requests_total", dimensions: [("endpoint", endpoint), ("status", String(status))],
                factory: factory)
            counters[key] = counter
            return counter
        }
    }

    func timer(endpoint: String) -> Metrics.Timer {
        timers.withLock { timers in
            if let timer = timers[endpoint] { return timer }
            let timer = Metrics.Timer(
                label: "gallocy_http_request_duration_seconds", dimensions: [("endpoint", endpoint)], factory: factory)
            timers[endpoint] = timer
            return timer
        }
    }
}
