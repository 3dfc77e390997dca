import Dispatch
import Foundation
import Glibc
import KairosClient
import KairosModelFormat
import KairosProtocol
import KairosServer
import Logging
import NIOCore
import NIOPosix

/// A server on 127.0.0.1 and a free port, serving a small synthetic model named "default".
final class ServerHarness: Sendable {
    let server: KairosServer
    let port: Int
    let directory: String

    static func start(pool: NIOThreadPool = .singleton, configure: (inout ServerConfiguration) -> Void = { _ in }) async throws -> ServerHarness {
        var template = Array("/tmp/kairos-server-test-XXXXXX".utf8CString)
        let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        try ModelWriter.write(SyntheticModel.make(items: 300, users: 50, dimensions: 16, seed: 11), to: "\(dir)/default.kmodel")
        let store = ModelStore()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let directory = ModelDirectory(path: dir, store: store, logger: logger)
        directory.reconcile()
        var config = ServerConfiguration()
        config.port = 0
        config.drainTimeout = .seconds(5)
        configure(&config)
        let server = KairosServer(configuration: config, store: store, directory: directory, logger: logger, pool: pool)
        let port = try await server.start()
        return ServerHarness(server: server, port: port, directory: dir, models: directory)
    }

    let models: ModelDirectory

    private init(server: KairosServer, port: Int, directory: String, models: ModelDirectory) {
        self.server = server
        self.port = port
        self.directory = directory
        self.models = models
    }

    func stop() async {
        await server.shutdown()
        for name in ModelStoreFiles.list(directory) { unlink("\(directory)/\(name)") }
        rmdir(directory)
    }

    /// A client whose timeout only bounds a failure: with every suite's servers running at once on 2 cores, an answer
    /// can take seconds (5 s timed out about once in ten full runs).
    func client() async throws -> KairosClient { try await KairosClient.connect(port: port, timeout: .seconds(30)) }
}

/// A plain blocking TCP socket, for sending raw (often invalid) bytes and reading raw answers. Used by one thread at a
/// time (``sendInBackground(_:)`` touches only the descriptor).
final class RawSocket: @unchecked Sendable {
    let fd: Int32
    /// Bytes received but not yet returned as frames.
    private var buffer = ByteBuffer()

    /// - Parameter receiveBuffer: a fixed kernel receive buffer in bytes (set before connecting, which turns off its
    ///   autotuning), so a test that stops reading knows how little the kernel holds for it.
    init(port: Int, receiveBuffer: Int32? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if var size = receiveBuffer { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) }
        // NIO builds the address: sockaddr_in's members come from CNIOLinux in a release build with testing enabled,
        // which MemberImportVisibility would make this file import.
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: port)
        let rc = address.withSockAddr { connect(fd, $0, socklen_t($1)) }
        guard rc == 0 else { throw ClientError.connectionClosed }
        var timeout = timeval(tv_sec: 20, tv_usec: 0)  // bounds a failure; a loaded machine can take seconds
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Shuts down the sending side (the server reads end-of-file; this side can still read).
    func shutdownWrite() { _ = Glibc.shutdown(fd, Int32(SHUT_WR)) }

    /// Sends `bytes` from another thread, for a send that blocks until the server reads; the semaphore is signalled
    /// when the send returns (sent, or the connection closed).
    func sendInBackground(_ bytes: [UInt8]) -> DispatchSemaphore {
        let fd = fd
        let done = DispatchSemaphore(value: 0)
        Thread {
            _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            done.signal()
        }.start()
        return done
    }

    /// Reads until `frames` complete frames arrived, the peer closed, or 20 s passed without a byte.
    /// - Parameter decodingAll: false decodes only error frames (the others come back as nil), for tests that read
    ///   megabytes of answers and check only their order and kind.
    /// - Returns: the frames and whether the peer closed the connection.
    func read(frames wanted: Int, decodingAll: Bool = true) -> (frames: [(FrameHeader, Response?)], closed: Bool) {
        var out: [(FrameHeader, Response?)] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while out.count < wanted {
            if case .frame(let h, let payload) = FrameParser.next(from: &buffer, maxPayload: 1 << 24) {
                let decode = decodingAll || h.opcode == FrameHeader.errorResponseCode
                out.append((h, decode ? try? Response.decode(code: h.opcode, payload: payload) : nil))
                continue
            }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return (out, n == 0) }
            buffer.writeBytes(chunk[0..<n])
        }
        return (out, false)
    }

    /// Whether the peer has closed (reads EOF within 20 s).
    func readsEOF() -> Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, 0) == 0
    }
}

func frameBytes(_ request: Request, id: UInt32) -> [UInt8] {
    var b = ByteBuffer()
    request.writeFrame(requestID: id, to: &b)
    return Array(b.readableBytesView)
}

/// Every file in a folder (test cleanup).
enum ModelStoreFiles {
    static func list(_ directory: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}

/// Runs `body` on a thread of its own and awaits its result: blocking socket calls that last seconds must not hold one
/// of the few threads of Swift's cooperative pool, which the other tests' async clients share (a test that did that
/// once starved HotReloadTests' load connections into a timeout).
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: body()) }.start()
    }
}
