import Foundation
import Glibc
@testable import KairosClient
import KairosProtocol
import KairosServer
import NIOCore
import Synchronization
import Testing

/// A listener on a free port standing in for a server: it answers every request frame with PONG, except that the
/// first `breaking` frames it receives close their connection unanswered, with `silent` it answers nothing, and with
/// `answering` it answers that error instead. With `refusing` it refuses each connection as the server does at its
/// limit or while draining: one error frame with request id 0, then close. Records which connection (in accept order)
/// each frame came over.
final class ScriptedServer: Sendable {
    let port: Int
    private let fd: Int32
    private let breaking: Int
    private let silent: Bool
    private let answering: ProtocolError.Code?
    private let refusing: ProtocolError.Code?
    private let log = Mutex<(accepted: Int, frames: [(connection: Int, opcode: UInt8)])>((0, []))

    init(breaking: Int = 0, silent: Bool = false, answering: ProtocolError.Code? = nil, refusing: ProtocolError.Code? = nil) throws {
        self.breaking = breaking
        self.silent = silent
        self.answering = answering
        self.refusing = refusing
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 0)
        guard address.withSockAddr({ bind(fd, $0, socklen_t($1)) }) == 0, listen(fd, 16) == 0 else { throw ClientError.connectionClosed }
        // The bound address as bytes (sockaddr_in's port is bytes 2-3, big-endian), as ServerHarness avoids its members.
        var bound = [UInt8](repeating: 0, count: 128)
        var length = socklen_t(bound.count)
        _ = bound.withUnsafeMutableBytes { getsockname(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length) }
        port = Int(bound[2]) << 8 | Int(bound[3])
        Thread { [self] in acceptLoop() }.start()
    }

    /// Connections accepted, and the frames received (connection number from 1, opcode).
    var accepted: Int { log.withLock { $0.accepted } }
    var frames: [(connection: Int, opcode: UInt8)] { log.withLock { $0.frames } }

    /// Stops accepting (connections already open stay as they are until their client closes them).
    func stop() { shutdown(fd, Int32(SHUT_RDWR)) }

    private func acceptLoop() {
        while true {
            let client = accept(fd, nil, nil)
            guard client >= 0 else {
                close(fd)
                return
            }
            let number = log.withLock { $0.accepted += 1; return $0.accepted }
            Thread { [self] in serve(client, number: number) }.start()
        }
    }

    private func serve(_ client: Int32, number: Int) {
        defer { close(client) }
        func reply(_ response: Response, id: UInt32) {
            var out = ByteBuffer()
            response.writeFrame(requestID: id, to: &out)
            let bytes = Array(out.readableBytesView)
            _ = bytes.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
        if let refusing {
            reply(.error(ProtocolError(refusing, "scripted refusal")), id: 0)
            return
        }
        var buffer = ByteBuffer()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { return }
            buffer.writeBytes(chunk[0..<n])
            while case .frame(let header, _) = FrameParser.next(from: &buffer, maxPayload: 1 << 20) {
                let seen = log.withLock { $0.frames.append((number, header.opcode)); return $0.frames.count }
                if seen <= breaking { return }
                if silent { continue }
                reply(answering.map { .error(ProtocolError($0, "scripted")) } ?? .pong, id: header.requestID)
            }
        }
    }
}

/// The Swift client's connections: scans apart from calls, broken connections replaced, broken calls sent once more
/// (never ROLLBACK), whole-call timeouts, and a real server restarted under it.
@Suite struct ClientTests {
    static let topK = Request.topK(TopKRequest(model: ModelRef(name: "default"), user: "user-1", k: 3))

    /// A call whose connection breaks before its answer is sent once more on a new connection and answered there.
    @Test func aBrokenCallIsSentOnceMoreOnANewConnection() async throws {
        let server = try ScriptedServer(breaking: 1)
        defer { server.stop() }
        let client = try await KairosClient.connect(port: server.port, timeout: .seconds(30))
        try await client.ping()
        #expect(server.accepted == 2)
        #expect(server.frames.map(\.connection) == [1, 2])
        try await client.ping()  // the new connection serves the next call
        #expect(server.accepted == 2 && server.frames.count == 3)
        await client.close()
    }

    /// A call broken twice fails with `connectionClosed` (two sends, no more); the next call connects again.
    @Test func aCallBrokenTwiceFails() async throws {
        let server = try ScriptedServer(breaking: 2)
        defer { server.stop() }
        let client = try await KairosClient.connect(port: server.port, timeout: .seconds(30))
        await #expect(throws: ClientError.connectionClosed) { try await client.ping() }
        #expect(server.frames.count == 2)
        try await client.ping()
        #expect(server.frames.count == 3 && server.accepted == 3)
        await client.close()
    }

    /// ROLLBACK is not sent again when its connection breaks: a second would roll back one more version.
    @Test func aBrokenRollbackIsNotSentAgain() async throws {
        let server = try ScriptedServer(breaking: 1)
        defer { server.stop() }
        let client = try await KairosClient.connect(port: server.port, timeout: .seconds(30))
        await #expect(throws: ClientError.connectionClosed) { _ = try await client.send(.rollback(name: "default")) }
        #expect(server.frames.count == 1)
        await client.close()
    }

    /// Catalogue scans and admin calls use a second connection, opened on first use; the other calls share the first.
    @Test func scansAndAdminCallsHaveTheirOwnConnection() async throws {
        let server = try ScriptedServer()
        defer { server.stop() }
        let client = try await KairosClient.connect(port: server.port, timeout: .seconds(30))
        try await client.ping()
        #expect(server.accepted == 1)
        _ = try await client.send(Self.topK)  // answered PONG by the script: only the connection matters here
        _ = try await client.send(.reload)
        _ = try await client.send(.info)
        #expect(server.frames.map(\.connection) == [1, 2, 2, 1])
        #expect(server.frames.map(\.opcode) == [Request.ping, Self.topK, .reload, .info].map(\.opcode.rawValue))
        await client.close()
    }

    /// The timeout bounds a call the server never answers; after close, calls fail without connecting.
    @Test func timeoutsAndClose() async throws {
        let server = try ScriptedServer(silent: true)
        defer { server.stop() }
        // Connected without a tight bound (a loaded test machine can take that long to connect); the call has one.
        let client = try await KairosClient.connect(port: server.port, timeout: .seconds(30))
        await #expect(throws: ClientError.timeout) { _ = try await client.send(.ping, timeout: .milliseconds(200)) }
        await client.close()
        await #expect(throws: ClientError.connectionClosed) { try await client.ping() }
        await #expect(throws: ClientError.connectionClosed) { _ = try await client.send(Self.topK) }
        #expect(server.accepted == 1)
    }

    static func local(_ port: Int) -> Endpoint { Endpoint(host: "127.0.0.1", port: port) }

    /// A client of `servers` in that order, whose failed endpoints stay down for the whole test.
    static func client(of servers: ScriptedServer...) async throws -> KairosClient {
        try await KairosClient.connect(endpoints: servers.map { local($0.port) }, timeout: .seconds(30), backoff: .seconds(600))
    }

    /// A refused endpoint is skipped, stays in its back-off, and the next endpoint serves both lanes.
    @Test func aRefusedEndpointIsSkipped() async throws {
        let gone = try ScriptedServer()
        gone.stop()
        let server = try ScriptedServer()
        defer { server.stop() }
        let client = try await Self.client(of: gone, server)
        try await client.ping()
        #expect(server.frames.count == 1)
        #expect(client.endpointStates.map(\.healthy) == [false, true])
        _ = try await client.send(Self.topK)
        #expect(server.frames.map(\.connection) == [1, 2])
        await client.close()
    }

    /// A call whose new connection breaks before any answer is resent to the next endpoint, which keeps serving.
    @Test func aBrokenCallMovesToTheNextEndpoint() async throws {
        let breaking = try ScriptedServer(breaking: 1)
        defer { breaking.stop() }
        let healthy = try ScriptedServer()
        defer { healthy.stop() }
        let client = try await Self.client(of: breaking, healthy)
        try await client.ping()
        #expect(breaking.frames.count == 1 && healthy.frames.count == 1)
        #expect(client.endpointStates.map(\.healthy) == [false, true])
        try await client.ping()
        #expect(breaking.frames.count == 1 && healthy.frames.count == 2 && healthy.accepted == 1)
        await client.close()
    }

    /// With every endpoint refusing, connecting fails with the connection error after trying each once (not a
    /// timeout); with no endpoint at all it fails at once.
    @Test func noReachableEndpointIsAClearError() async throws {
        let a = try ScriptedServer()
        a.stop()
        let b = try ScriptedServer()
        b.stop()
        do {
            _ = try await KairosClient.connect(endpoints: [Self.local(a.port), Self.local(b.port)], timeout: .seconds(30))
            Issue.record("connected to a stopped listener")
        } catch {
            #expect(!(error is ClientError), "\(error)")
        }
        await #expect(throws: ClientError.noEndpoints) { _ = try await KairosClient.connect(endpoints: []) }
    }

    /// A draining endpoint's SHUTTING_DOWN hands the call (even a ROLLBACK: it was not begun) to the next endpoint;
    /// with no other endpoint the answer is SHUTTING_DOWN, after one try.
    @Test func aDrainingEndpointHandsItsCallsToTheNext() async throws {
        let draining = try ScriptedServer(answering: .shuttingDown)
        defer { draining.stop() }
        let healthy = try ScriptedServer()
        defer { healthy.stop() }
        let client = try await Self.client(of: draining, healthy)
        try await client.ping()
        #expect(draining.frames.count == 1 && healthy.frames.count == 1)
        #expect(client.endpointStates.map(\.healthy) == [false, true])
        _ = try await client.send(.rollback(name: "default"))
        #expect(healthy.frames.map(\.opcode).last == Request.rollback(name: "default").opcode.rawValue)
        await client.close()

        let alone = try await KairosClient.connect(endpoints: [Self.local(draining.port)], timeout: .seconds(30))
        let answer = try await alone.send(.ping)
        #expect(answer == .error(ProtocolError(.shuttingDown, "scripted")))
        #expect(draining.frames.count == 2)
        await alone.close()
    }

    /// A connection the server refuses (an error frame with id 0 on accept) sends the call to the next endpoint; with
    /// no other endpoint the call's answer is that refusal.
    @Test func aRefusedConnectionMovesToTheNextEndpoint() async throws {
        let full = try ScriptedServer(refusing: .overloaded)
        defer { full.stop() }
        let healthy = try ScriptedServer()
        defer { healthy.stop() }
        let client = try await Self.client(of: full, healthy)
        try await client.ping()
        #expect(healthy.frames.count == 1)
        #expect(client.endpointStates.map(\.healthy) == [false, true])
        await client.close()

        let alone = try await KairosClient.connect(endpoints: [Self.local(full.port)], timeout: .seconds(30))
        await #expect(throws: ProtocolError(.overloaded, "scripted refusal")) { try await alone.ping() }
        await alone.close()
    }

    /// The back-off: the first healthy endpoint in list order is chosen; a failed one is avoided until its back-off
    /// ends, which doubles with each failure up to the maximum; when every untried one is down, the soonest back wins.
    @Test func endpointBackOff() {
        let health = EndpointHealth([1, 2, 3].map(Self.local), backoff: .seconds(1), maxBackoff: .seconds(3))
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
        #expect(health.choose(excluding: [], now: t0) == 0)
        health.markDown(0, now: t0)
        #expect(health.choose(excluding: [], now: t0) == 1)
        #expect(health.choose(excluding: [1, 2], now: t0) == 0)
        #expect(health.choose(excluding: [], now: t0 + .seconds(1)) == 0)
        health.markDown(0, now: t0)  // second failure: 2 s
        #expect(health.choose(excluding: [], now: t0 + .milliseconds(1_999)) == 1)
        #expect(health.choose(excluding: [], now: t0 + .seconds(2)) == 0)
        health.markDown(0, now: t0)  // third: 4 s, capped at 3 s
        #expect(health.choose(excluding: [], now: t0 + .seconds(3)) == 0)
        health.markDown(1, now: t0)  // down until t0 + 1 s
        health.markDown(2, now: t0 - .milliseconds(500))  // down until t0 + 0.5 s
        #expect(health.choose(excluding: [], now: t0) == 2)
        #expect(health.choose(excluding: [2], now: t0) == 1)
        #expect(health.choose(excluding: [0, 1, 2], now: t0) == nil)
        health.markUp(0)
        #expect(health.choose(excluding: [], now: t0) == 0)
        #expect(health.states(now: t0).map(\.healthy) == [true, false, false])
    }

    /// A client outlives a restart of its server: the calls after it are answered by the new process.
    @Test func aClientOutlivesAServerRestart() async throws {
        let first = try await ServerHarness.start()
        let client = try await first.client()
        try await client.ping()
        _ = try await client.topK(TopKRequest(model: ModelRef(name: "default"), user: "user-1", k: 3))
        let port = first.port
        await first.stop()
        let second = try await ServerHarness.start { $0.port = port }
        try await client.ping()
        let answer = try await client.topK(TopKRequest(model: ModelRef(name: "default"), user: "user-1", k: 3))
        #expect(answer.items.count == 3)
        await client.close()
        await second.stop()
    }
}
