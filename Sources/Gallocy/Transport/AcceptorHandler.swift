import GallocyCodec
import GallocyRaft
import Logging
import NIOCore

/// The handler of a connection a peer dialed to our listen address: it runs the acceptor's half
/// of the handshake, then decodes message frames and delivers them. Anything that breaks the
/// protocol closes this connection only, with one log line that says why.
final class AcceptorHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Phase {
        case awaitingHello
        case awaitingAuth(PeerHandshake.Hello, acceptorNonce: [UInt8])
        case ready(peer: NodeID)
        case failed
    }

    private let transport: PeerTransport
    private var phase = Phase.awaitingHello
    private var reader = TransportFrameReader()
    private var timeout: Scheduled<Void>?
    private var remote = "unknown"

    init(transport: PeerTransport) {
        self.transport = transport
    }

    func channelActive(context: ChannelHandlerContext) {
        remote = context.remoteAddress.map { "\($0)" } ?? "unknown"
        guard transport.registerInbound(context.channel) else {
            phase = .failed
            context.close(promise: nil)
            return
        }
        timeout = context.eventLoop.assumeIsolated().scheduleTask(in: transport.configuration.handshakeTimeout) {
            self.refuse(context: context, "handshake not completed in time")
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timeout?.cancel()
        transport.unregisterInbound(context.channel)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Socket errors (a reset by the peer) are not the peer's protocol mistakes: close quietly.
        transport.logger.debug("peer connection error", metadata: ["remote": "\(remote)", "error": "\(error)"])
        phase = .failed
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if case .failed = phase { return }
        reader.append(&bytes)
        while true {
            let frame: TransportFrame?
            do { frame = try reader.next(maxLength: maxFrameLength) } catch {
                return violation(context: context, "\(error)")
            }
            guard let frame else { return }
            handle(frame, context: context)
            if case .failed = phase { return }
        }
    }

    /// Before the handshake only small frames are allowed, so that a stranger cannot make us
    /// buffer 65 MiB.
    private var maxFrameLength: Int {
        if case .ready = phase { return TransportFrame.maxMessageLength }
        return TransportFrame.maxHandshakeLength
    }

    private func handle(_ frame: TransportFrame, context: ChannelHandlerContext) {
        let me = transport.configuration.id
        switch (phase, frame.kind) {
        case (.ready(let peer), .message):
            let decoded = frame.payload.withUnsafeReadableBytes { raw in
                Result { () throws(CodecError) in try MessageCodec.decode(raw) }
            }
            let message: Message
            switch decoded {
            case .success(let m): message = m
            case .failure(let error): return violation(context: context, "bad message from peer \(peer): \(error)")
            }
            // A message whose ids disagree with the handshake is a bug or a forgery either way.
            guard message.from == peer, message.to == me else {
                return violation(
                    context: context,
                    "message from \(message.from) to \(message.to) on a connection from \(peer) to \(me)")
            }
            transport.deliver(message, from: peer, frameBytes: frame.payload.readableBytes + TransportFrame.headerSize)

        case (.awaitingHello, .hello):
            let hello: PeerHandshake.Hello
            do { hello = try PeerHandshake.decodeHello(frame.payload) } catch {
                return refuse(context: context, "not a Gallocy peer: \(error)")
            }
            guard hello.version == PeerHandshake.protocolVersion else {
                return refuse(
                    context: context,
                    "peer speaks transport protocol \(hello.version), this member speaks \(PeerHandshake.protocolVersion)"
                )
            }
            guard hello.to == me else {
                return refuse(
                    context: context, "peer \(hello.from) dialed member \(hello.to), but this is member \(me)")
            }
            guard hello.from != 0, hello.from != me else {
                return refuse(context: context, "peer claims id \(hello.from)")
            }
            let ours = transport.clusterID
            guard ours == 0 || hello.clusterID == 0 || ours == hello.clusterID else {
                return refuse(
                    context: context, "peer \(hello.from) is in cluster \(hello.clusterID), this member in \(ours)")
            }
            switch (transport.key != nil, hello.hasSecret) {
            case (true, false):
                return refuse(context: context, "peer \(hello.from) has no shared secret and this member requires one")
            case (false, true):
                return refuse(context: context, "peer \(hello.from) requires a shared secret and this member has none")
            default: break
            }
            let nonce = PeerHandshake.makeNonce()
            let challenge = PeerHandshake.Challenge(
                acceptorID: me, clusterID: ours, hasSecret: transport.key != nil, nonce: nonce)
            phase = .awaitingAuth(hello, acceptorNonce: nonce)
            context.writeAndFlush(
                wrapOutboundOut(TransportFrame.encode(.challenge, PeerHandshake.encode(challenge))), promise: nil)

        case (.awaitingAuth(let hello, let acceptorNonce), .auth):
            var proof: [UInt8] = []
            if let key = transport.key {
                let expected = PeerHandshake.dialerProofInput(
                    acceptorNonce: acceptorNonce, dialer: hello.from, acceptor: me, dialerNonce: hello.nonce)
                guard PeerHandshake.isValid(proof: frame.payload, expected: expected, secret: key) else {
                    return refuse(context: context, "peer \(hello.from) failed to prove it holds the shared secret")
                }
                proof = PeerHandshake.acceptorProof(
                    secret: key, dialerNonce: hello.nonce, dialer: hello.from, acceptor: me,
                    acceptorNonce: acceptorNonce)
            } else if frame.payload.readableBytes != 0 {
                return refuse(context: context, "unexpected proof from peer \(hello.from)")
            }
            phase = .ready(peer: hello.from)
            timeout?.cancel()
            timeout = nil
            context.writeAndFlush(wrapOutboundOut(TransportFrame.encode(.accept, proof)), promise: nil)
            transport.logger.debug(
                "accepted peer connection", metadata: ["peer": "\(hello.from)", "remote": "\(remote)"])

        case (_, .refuse):
            let reason = frame.payload.getString(
                at: frame.payload.readerIndex, length: min(frame.payload.readableBytes, 512))
            transport.countRefused()
            log("peer refused the handshake", reason ?? "no reason given")
            phase = .failed
            context.close(promise: nil)

        case (.ready, _):
            violation(context: context, "unexpected \(frame.kind) frame after the handshake")

        default:
            refuse(context: context, "unexpected \(frame.kind) frame during the handshake")
        }
    }

    /// Refuses the handshake: tells the dialer why (so that its log says so too), logs, closes.
    private func refuse(context: ChannelHandlerContext, _ reason: String) {
        if case .failed = phase { return }
        phase = .failed
        timeout?.cancel()
        transport.countRefused()
        log("refused peer connection", reason)
        context.writeAndFlush(wrapOutboundOut(TransportFrame.encode(.refuse, Array(reason.utf8.prefix(256)))))
            .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    /// Closes a connection whose bytes broke the protocol (after the handshake, or framing
    /// that cannot be trusted to carry a refuse frame back).
    private func violation(context: ChannelHandlerContext, _ reason: String) {
        if case .failed = phase { return }
        let wasReady: Bool
        if case .ready = phase { wasReady = true } else { wasReady = false }
        phase = .failed
        timeout?.cancel()
        if wasReady { transport.countProtocolError() } else { transport.countRefused() }
        log("closed peer connection: protocol violation", reason)
        context.close(promise: nil)
    }

    private func log(_ what: Logger.Message, _ reason: String) {
        let metadata: Logger.Metadata = ["remote": "\(remote)", "reason": "\(reason)"]
        if transport.shouldWarn(reason: reason) {
            transport.logger.warning(what, metadata: metadata)
        } else {
            transport.logger.debug(what, metadata: metadata)
        }
    }
}
