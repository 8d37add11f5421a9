import PilotTestSupport
import PilotWire
import XCTest

/// The driver protocol of the daemon's Unix socket (`docs/PROTOCOL.md §12.1`). The expected bytes
/// are written from the spec's layouts: `[u32 length][command][payload]`, big-endian.
final class DriverFrameTests: XCTestCase {
    private let peer = Address(network: 1, node: 0x2A)

    /// One request of every kind, with values that fill each field.
    private var everyRequest: [DriverRequest] {
        [
            .bind(port: 1000), .unbind(port: 0xFFFF),
            .dial(peer, port: 7),
            .send(connection: 9, data: Array("payload".utf8)), .send(connection: 0, data: []),
            .close(connection: 0xDEAD_BEEF),
            .sendTo(peer, port: 5000, data: [0, 1, 2], confirm: false),
            .sendTo(.broadcast(network: 3), port: 5000, data: [], confirm: true),
            .info, .health, .rotateKey, .deregister, .cancel,
            .handshake(.send(node: 5, justification: "please, it's me — ünïcode")),
            .handshake(.send(node: 5, justification: "")),
            .handshake(.approve(node: 6)), .handshake(.reject(node: 7, reason: "no")),
            .handshake(.pending), .handshake(.trusted), .handshake(.revoke(node: 8)),
            .handshake(.wait(node: 9, timeoutMilliseconds: 30_000)),
            .resolveHostname("agent-7"), .setHostname(""), .setWebhook("https://example.com/hook?a=<b>&c"),
            .setVisibility(public: true), .setVisibility(public: false),
            .setTags([]), .setTags(["gpu", "a\"quoted\"", "<html>"]),
            .network(.list), .network(.join(network: 3, token: "s3cret")), .network(.join(network: 4, token: "")),
            .network(.leave(network: 3)), .network(.members(network: 3)),
            .network(.invite(network: 3, node: 0x0102_0304)), .network(.pollInvites),
            .network(.respond(network: 3, accept: true)), .network(.respond(network: 3, accept: false)),
            .broadcast(network: 3, port: 1002, token: Array("admin".utf8), data: Array("hello all".utf8)),
            .broadcast(network: 0, port: 1, token: [], data: []),
            .preferDirect(node: 0xFFFF_FFFE),
            .other(.managed, payload: [0x05, 0x00, 0x00, 0x03]),
            .other(.submitBadge, payload: Array(#"{"badge":"b","badge_sig":"s"}"#.utf8)),
            .other(.enrollRecovery, payload: []), .other(.signEnvelope, payload: Array("{}".utf8)),
            .other(.verifyEnvelope, payload: Array("{}".utf8)),
        ]
    }

    // MARK: Byte-exact encodings

    func testRequestsEncodeToTheSpecLayouts() {
        let vectors: [(DriverRequest, String)] = [
            (.info, "00000001 0D"),
            (.bind(port: 1000), "00000003 01 03E8"),
            (.unbind(port: 1000), "00000003 37 03E8"),
            (.dial(peer, port: 7), "00000009 03 0001 0000002A 0007"),
            (.close(connection: 9), "00000005 08 00000009"),
            (.send(connection: 9, data: Array("hi".utf8)), "00000007 06 00000009 6869"),
            (.sendTo(Address(node: 7), port: 5000, data: Array("hi".utf8), confirm: true), "0000000B 39 0000 00000007 1388 6869"),
            (.sendTo(Address(node: 7), port: 5000, data: [], confirm: false), "00000009 0B 0000 00000007 1388"),
            (.handshake(.send(node: 5, justification: "hi")), "00000008 0F 01 00000005 6869"),
            (.handshake(.trusted), "00000002 0F 05"),
            (.handshake(.wait(node: 5, timeoutMilliseconds: 30_000)), "0000000A 0F 07 00000005 00007530"),
            (.setVisibility(public: true), "00000002 15 01"),
            (.setHostname("ab"), "00000003 13 6162"),
            (.setTags(["a", "b"]), "0000000A 19 5B2261222C2262225D"),
            (.network(.join(network: 0x0102, token: "t")), "00000005 1F 02 0102 74"),
            (.network(.respond(network: 0x0102, accept: true)), "00000005 1F 07 0102 01"),
            (.broadcast(network: 3, port: 1002, token: Array("ab".utf8), data: Array("x".utf8)), "0000000A 29 0003 03EA 0002 6162 78"),
            (.preferDirect(node: 0x0A0B_0C0D), "00000005 2D 0A0B0C0D"),
            (.cancel, "00000001 2B"),
        ]
        for (request, hex) in vectors {
            XCTAssertEqual(request.frame().encoded(), [UInt8](hex: hex), "\(request)")
        }
    }

    func testRepliesAndPushesEncodeToTheSpecLayouts() {
        let vectors: [(DriverFrame, [UInt8])] = [
            (DriverReply.error("unknown command: 0x1D"), [UInt8](hex: "00000018 0A 0001") + Array("unknown command: 0x1D".utf8)),
            (DriverReply.port(.bindOK, 1000), [UInt8](hex: "00000003 02 03E8")),
            (DriverReply.port(.unbindOK, 1000), [UInt8](hex: "00000003 38 03E8")),
            (DriverReply.connection(.dialOK, 9), [UInt8](hex: "00000005 04 00000009")),
            (DriverReply.connection(.closeOK, 9), [UInt8](hex: "00000005 09 00000009")),
            (DriverReply.accept(localPort: 1000, connection: 9, remote: Address(network: 1, node: 7), remotePort: 8080),
             [UInt8](hex: "0000000F 05 03E8 00000009 0001 00000007 1F90")),
            (DriverReply.recv(connection: 9, data: Array("ok".utf8)), [UInt8](hex: "00000007 07 00000009 6F6B")),
            (DriverReply.recvFrom(source: Address(node: 7), sourcePort: 1000, destinationPort: 1001, data: Array("ok".utf8)),
             [UInt8](hex: "0000000D 0C 0000 00000007 03E8 03E9 6F6B")),
            (DriverFrame(.sendToConfirmOK), [UInt8](hex: "00000001 3A")),
        ]
        for (frame, bytes) in vectors {
            XCTAssertEqual(frame.encoded(), bytes, "\(frame)")
        }
    }

    /// Keys sorted and `<`, `>`, `&` escaped, as Go's `json.Marshal` writes the 1.18 replies.
    func testJSONRepliesAreCompactWithGoEscaping() {
        let frame = DriverReply.json(.infoOK, ["node_id": 7, "motd": "<b>&", "features": ["dgram_confirm"]])
        XCTAssertEqual(frame.command, 0x0E)
        XCTAssertEqual(
            String(decoding: frame.payload, as: UTF8.self),
            #"{"features":["dgram_confirm"],"motd":"\u003cb\u003e\u0026","node_id":7}"#)
    }

    func testCommandNamesAreUpperCamelCase() {
        XCTAssertEqual(DriverCommand.info.name, "Info")
        XCTAssertEqual(DriverCommand.bindOK.name, "BindOK")
        XCTAssertEqual(DriverCommand.sendToConfirmOK.name, "SendToConfirmOK")
        XCTAssertEqual(DriverCommand.resolveHostname.name, "ResolveHostname")
    }

    // MARK: Round trips

    func testEveryRequestDecodesBackFromItsFrame() throws {
        for request in everyRequest {
            let frame = request.frame()
            XCTAssertEqual(frame.command, request.command.rawValue, "\(request)")
            XCTAssertEqual(try DriverRequest(decoding: frame), request)
        }
    }

    func testEveryPushDecodesBackFromItsFrame() throws {
        let pushes: [DriverPush] = [
            .accept(localPort: 1000, connection: 9, remote: peer, remotePort: 49_152),
            .recv(connection: 9, data: Array("data".utf8)), .recv(connection: 9, data: []),
            .remoteClosed(connection: 9),
            .recvFrom(source: peer, sourcePort: 1000, destinationPort: 1001, data: [0xFF]),
        ]
        for push in pushes {
            XCTAssertEqual(try DriverPush(decoding: push.frame()), push)
        }
        XCTAssertEqual(try DriverPush(decoding: DriverReply.connection(.closeOK, 9)), .remoteClosed(connection: 9))
    }

    func testRepliesAndRequestsAreNotPushes() throws {
        XCTAssertNil(try DriverPush(decoding: DriverReply.json(.infoOK, [:])))
        XCTAssertNil(try DriverPush(decoding: DriverReply.error("x")))
        XCTAssertNil(try DriverPush(decoding: DriverRequest.info.frame()))
        XCTAssertNil(try DriverPush(decoding: DriverFrame(command: 0x1D, payload: [])))
    }

    // MARK: Streams

    func testFramesDeliveredOneByteAtATimeComeOutWhole() throws {
        let frames = everyRequest.map { $0.frame() } + [DriverReply.error("no"), DriverFrame(command: 0xEE, payload: [1])]
        let stream = frames.flatMap { $0.encoded() }
        var decoder = DriverFrameDecoder()
        var received: [DriverFrame] = []
        for byte in stream {
            decoder.append(CollectionOfOne(byte))
            while let frame = try decoder.next() { received.append(frame) }
            XCTAssertLessThanOrEqual(decoder.bufferedCount, frames.map { $0.payload.count + 5 }.max() ?? 0)
        }
        XCTAssertEqual(received, frames)
        XCTAssertEqual(decoder.bufferedCount, 0)
        XCTAssertEqual(try received.prefix(everyRequest.count).map { try DriverRequest(decoding: $0) }, everyRequest)
    }

    func testAFrameOfExactlyTheMaximumSizeIsAccepted() throws {
        let frame = DriverFrame(.send, payload: [UInt8](repeating: 0xAB, count: DriverFrame.maxPayloadSize))
        var decoder = DriverFrameDecoder()
        decoder.append(frame.encoded())
        XCTAssertEqual(try decoder.next(), frame)
    }

    func testALengthOverOneMebibyteIsRejectedBeforeBuffering() {
        var decoder = DriverFrameDecoder()
        decoder.append([UInt8](hex: "00100001 06"))
        XCTAssertThrowsError(try decoder.next()) { error in
            XCTAssertEqual("\(error)", "oversized driver frame: 1048577 bytes, limit 1048576")
        }
        XCTAssertEqual(decoder.bufferedCount, 5)
    }

    func testALengthOfZeroIsRejected() {
        var decoder = DriverFrameDecoder()
        decoder.append([0, 0, 0, 0, 0, 0, 0, 1, 0x0D])
        XCTAssertThrowsError(try decoder.next()) { error in
            XCTAssertEqual("\(error)", "invalid driver frame length: 0, a frame holds at least its command byte")
        }
    }

    // MARK: Refused requests

    func testUnknownCommandsGetTheDaemonsOwnMessage() {
        for (command, message) in [(0x1D, "unknown command: 0x1D"), (0x2C, "unknown command: 0x2C"), (0xFF, "unknown command: 0xFF"),
                                   (0x02, "unknown command: 0x02")] {
            XCTAssertThrowsError(try DriverRequest(decoding: DriverFrame(command: UInt8(command), payload: []))) { error in
                XCTAssertEqual(error as? WireError, .unknownCommand(UInt8(command)))
                XCTAssertEqual("\(error)", message)
            }
        }
    }

    /// Reply and push codes sent to the daemon are unknown commands, as they are to 1.18.
    func testOnlyRequestCommandsDecodeAsRequests() {
        let requests = Set(everyRequest.map(\.command))
        for command in DriverCommand.allCases {
            let frame = DriverFrame(command, payload: [])
            do {
                _ = try DriverRequest(decoding: frame)
                XCTAssertTrue(requests.contains(command), "\(command.name) decoded as a request")
            } catch .unknownCommand(let byte) {
                XCTAssertEqual(byte, command.rawValue)
                XCTAssertFalse(requests.contains(command), "\(command.name) refused")
            } catch {
                XCTAssertTrue(requests.contains(command), "\(command.name): \(error)")
            }
        }
    }

    func testShortPayloadsNameTheMissingField() {
        let cases: [(DriverFrame, String)] = [
            (DriverFrame(.bind, payload: [0x03]), "truncated bind port: needs 2 bytes, 1 available"),
            (DriverFrame(.dial, payload: [UInt8](hex: "0001 0000002A 00")), "truncated dial port: needs 2 bytes, 1 available"),
            (DriverFrame(.dial, payload: [UInt8](hex: "0001 00")), "truncated address node: needs 4 bytes, 1 available"),
            (DriverFrame(.send, payload: [0, 0]), "truncated send connection id: needs 4 bytes, 2 available"),
            (DriverFrame(.sendToConfirm, payload: [UInt8](hex: "0000 00000007")), "truncated sendto port: needs 2 bytes, 0 available"),
            (DriverFrame(.handshake, payload: []), "truncated handshake sub-command: needs 1 bytes, 0 available"),
            (DriverFrame(.handshake, payload: [UInt8](hex: "07 00000005 0000")),
             "truncated handshake wait timeout: needs 4 bytes, 2 available"),
            (DriverFrame(.network, payload: [UInt8](hex: "05 0003 0000")), "truncated network invite node: needs 4 bytes, 2 available"),
            (DriverFrame(.network, payload: [UInt8](hex: "07 0003")), "truncated network respond accept: needs 1 bytes, 0 available"),
            (DriverFrame(.broadcast, payload: [UInt8](hex: "0003 03EA 0005 6162")), "truncated broadcast token: needs 5 bytes, 2 available"),
            (DriverFrame(.setVisibility, payload: []), "truncated visibility: needs 1 bytes, 0 available"),
            (DriverFrame(.preferDirect, payload: [1, 2, 3]), "truncated prefer-direct node: needs 4 bytes, 3 available"),
        ]
        for (frame, message) in cases {
            XCTAssertThrowsError(try DriverRequest(decoding: frame)) { error in XCTAssertEqual("\(error)", message) }
        }
    }

    func testEveryShorterPayloadOfAFixedLayoutFails() {
        let requests: [DriverRequest] = [
            .bind(port: 1), .unbind(port: 1), .dial(peer, port: 1), .close(connection: 1), .sendTo(peer, port: 1, data: [], confirm: false),
            .handshake(.wait(node: 1, timeoutMilliseconds: 1)), .handshake(.approve(node: 1)),
            .network(.invite(network: 1, node: 1)), .network(.respond(network: 1, accept: true)),
            .broadcast(network: 1, port: 1, token: Array("token".utf8), data: []), .preferDirect(node: 1),
        ]
        for request in requests {
            let frame = request.frame()
            let failures = assertEveryTruncationFails(frame.payload) { payload in
                _ = try DriverRequest(decoding: DriverFrame(command: frame.command, payload: payload))
            }
            XCTAssertEqual(failures, frame.payload.count, "\(request)")
        }
    }

    func testBytesAfterTheLastFieldAreRefused() {
        let cases: [(DriverFrame, String)] = [
            (DriverFrame(.bind, payload: [0x03, 0xE8, 0x00]), "1 trailing bytes after Bind request"),
            (DriverFrame(.info, payload: [0x00]), "1 trailing bytes after Info request"),
            (DriverFrame(.handshake, payload: [UInt8](hex: "04 00")), "1 trailing bytes after Handshake request"),
            (DriverFrame(.network, payload: [UInt8](hex: "03 0001 0000")), "2 trailing bytes after Network request"),
            (DriverFrame(.setVisibility, payload: [1, 1]), "1 trailing bytes after SetVisibility request"),
        ]
        for (frame, message) in cases {
            XCTAssertThrowsError(try DriverRequest(decoding: frame)) { error in XCTAssertEqual("\(error)", message) }
        }
    }

    func testUnknownSubCommandsAreRefused() {
        XCTAssertThrowsError(try DriverRequest(decoding: DriverFrame(.handshake, payload: [0x08]))) { error in
            XCTAssertEqual(error as? WireError, .unknownType(field: "handshake sub-command", value: 8))
        }
        XCTAssertThrowsError(try DriverRequest(decoding: DriverFrame(.network, payload: [0x00]))) { error in
            XCTAssertEqual(error as? WireError, .unknownType(field: "network sub-command", value: 0))
        }
    }

    func testTextThatIsNotUTF8IsRefused() {
        XCTAssertThrowsError(try DriverRequest(decoding: DriverFrame(.setHostname, payload: [0x61, 0xFF]))) { error in
            XCTAssertEqual("\(error)", "invalid hostname: not UTF-8")
        }
        XCTAssertThrowsError(try DriverRequest(decoding: DriverFrame(.handshake, payload: [UInt8](hex: "01 00000005 C3")))) { error in
            XCTAssertEqual("\(error)", "invalid handshake justification: not UTF-8")
        }
    }

    // MARK: Lenient fields, as 1.18 reads them

    func testFlagBytesOtherThanOneMeanFalse() throws {
        XCTAssertEqual(try DriverRequest(decoding: DriverFrame(.setVisibility, payload: [2])), .setVisibility(public: false))
        XCTAssertEqual(
            try DriverRequest(decoding: DriverFrame(.network, payload: [UInt8](hex: "07 0003 FF"))),
            .network(.respond(network: 3, accept: false)))
    }

    func testCancelIgnoresItsPayload() throws {
        XCTAssertEqual(try DriverRequest(decoding: DriverFrame(.cancel, payload: [1, 2, 3])), .cancel)
    }

    func testTagsAreAJSONArrayOfStrings() throws {
        XCTAssertEqual(try DriverRequest(decoding: DriverFrame(.setTags, payload: Array(#" [ "x" , "y" ] "#.utf8))), .setTags(["x", "y"]))
        XCTAssertEqual(try DriverRequest(decoding: DriverFrame(.setTags, payload: Array("null".utf8))), .setTags([]))
        XCTAssertThrowsError(try DriverRequest(decoding: DriverFrame(.setTags, payload: Array(#"{"a":1}"#.utf8)))) { error in
            XCTAssertEqual("\(error)", "invalid tags: not a JSON array of strings")
        }
        XCTAssertThrowsError(try DriverRequest(decoding: DriverFrame(.setTags, payload: Array(#"["a",1]"#.utf8)))) { error in
            XCTAssertEqual("\(error)", "invalid tags: an element is not a string")
        }
        XCTAssertThrowsError(try DriverRequest(decoding: DriverFrame(.setTags, payload: [])))
    }

    func testPushesWithShortOrLongPayloadsAreRefused() {
        XCTAssertThrowsError(try DriverPush(decoding: DriverFrame(.accept, payload: [UInt8](hex: "03E8 00000009 0001 00000007 1F")))) { error in
            XCTAssertEqual("\(error)", "truncated accept remote port: needs 2 bytes, 1 available")
        }
        XCTAssertThrowsError(try DriverPush(decoding: DriverFrame(.closeOK, payload: [0, 0, 0, 9, 0]))) { error in
            XCTAssertEqual("\(error)", "1 trailing bytes after CloseOK push")
        }
        XCTAssertThrowsError(try DriverPush(decoding: DriverFrame(.recvFrom, payload: [UInt8](hex: "0000 00000007 03E8 03")))) { error in
            XCTAssertEqual("\(error)", "truncated recvfrom destination port: needs 2 bytes, 1 available")
        }
    }
}
