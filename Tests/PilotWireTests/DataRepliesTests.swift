import PilotWire
import XCTest

final class DataRepliesTests: XCTestCase {
    func testSendRepliesAreWhatTheHostSends() throws {
        try assertReply(
            DataControl.Send.self, StreamSent(target: "bob", to: "0:0000.0000.0007", port: 1000, bytes: 2, reply: "hi"),
            #"{"bytes":2,"port":1000,"reply":"hi","target":"bob","to":"0:0000.0000.0007"}"#)
        try assertReply(
            DataControl.Send.self, StreamSent(target: "7", to: "0:0000.0000.0007", port: 80, bytes: 0, reply: nil),
            #"{"bytes":0,"port":80,"target":"7","to":"0:0000.0000.0007"}"#)
        try assertReply(
            DataControl.SendDatagram.self, DatagramSent(target: "bob", to: "0:0000.0000.0007", port: 80, bytes: 1),
            #"{"bytes":1,"port":80,"target":"bob","to":"0:0000.0000.0007"}"#)
    }

    func testBenchAndPingReports() throws {
        try assertReply(
            DataControl.Bench.self,
            BenchReport(
                target: "bob", to: "0:0000.0000.0007", bytes: 1_048_576, receivedBytes: 1_048_576, seconds: 0.125, sendMilliseconds: 50,
                megabytesPerSecond: 8.39),
            #"{"bytes":1048576,"complete":true,"mb_per_second":8.39,"recv_bytes":1048576,"seconds":0.125,"send_duration_ms":50,"send_mbps":20,"#
                + #""sent_bytes":1048576,"target":"bob","to":"0:0000.0000.0007","total_duration_ms":125,"total_mbps":8,"verified":true}"#)
        try assertReply(
            DataControl.Ping.self,
            PingReport(
                target: "bob", to: "0:0000.0000.0007",
                results: [.init(sequence: 0, bytes: 6, milliseconds: 0.25), .init(sequence: 1, error: "no answer within 10 seconds")],
                timeout: true),
            #"{"results":[{"bytes":6,"rtt_ms":0.25,"seq":0},{"error":"no answer within 10 seconds","seq":1}],"target":"bob","timeout":true,"to":"0:0000.0000.0007"}"#)
    }

    func testWhatArrivedOnAPortKeepsEachListsFieldNames() throws {
        try assertReply(
            DataControl.Receive.self,
            PortArrivals(kind: .streams, port: 80, arrivals: [.init(from: "0:0000.0000.0007", port: 49152, bytes: 2, data: "hi")], timeout: false),
            #"{"messages":[{"bytes":2,"data":"hi","from":"0:0000.0000.0007","port":49152}],"port":80,"timeout":false}"#)
        try assertReply(
            DataControl.Listen.self,
            PortArrivals(kind: .datagrams, port: 80, arrivals: [.init(from: "0:0000.0000.0007", port: 49152, bytes: 2, data: "hi")], timeout: false),
            #"{"datagrams":[{"bytes":2,"data":"hi","from":"0:0000.0000.0007","src_port":49152}],"port":80,"timeout":false}"#)
        try assertReply(DataControl.Listen.self, PortArrivals(kind: .datagrams, port: 80, arrivals: [], timeout: true), #"{"datagrams":[],"port":80,"timeout":true}"#)
        try assertReply(DataControl.Receive.self, PortArrivals(kind: .streams, port: 80, arrivals: [], timeout: true), #"{"messages":[],"port":80,"timeout":true}"#)
    }

    func testConnectionsAndPeers() throws {
        try assertReply(
            DataControl.Connections.self,
            ConnectionList(connections: [.init(localPort: 49152, remoteAddress: "0:0000.0000.0007", remotePort: 7, state: "ESTABLISHED", unacknowledgedBytes: 0)]),
            #"{"connections":[{"local_port":49152,"remote_addr":"0:0000.0000.0007","remote_port":7,"state":"ESTABLISHED","unacked_bytes":0}],"total":1}"#)
        try assertReply(DataControl.Connections.self, ConnectionList(connections: []), #"{"connections":[],"total":0}"#)
        // With 1.18's figures of the stream (its conn_list row), each that the host gave.
        let figures = Dictionary(uniqueKeysWithValues: ConnectionList.figureKeys.enumerated().map { ($1, Int64($0)) })
        let counted = ConnectionList(connections: [
            .init(localPort: 7, remoteAddress: "0:0000.0000.0007", remotePort: 49152, state: "TIME_WAIT", unacknowledgedBytes: 0, figures: figures, inRecovery: false),
        ])
        let row = try XCTUnwrap(counted.json["connections"]?.arrayValue?.first?.objectValue)
        XCTAssertEqual(Set(row.keys), Set(ConnectionList.figureKeys + ["local_port", "remote_addr", "remote_port", "state", "unacked_bytes", "in_recovery"]))
        XCTAssertEqual(row["srtt_ms"], .integer(Int64(ConnectionList.figureKeys.firstIndex(of: "srtt_ms") ?? -1)))
        XCTAssertEqual(try DataControl.Connections.data(of: .ok(counted.json)), counted)
        // pilot-host's own figures for a stall, beside 1.18's: they go over the wire too.
        let diagnosed = ConnectionList(connections: [
            .init(
                localPort: 49152, remoteAddress: "0:0000.0000.0007", remotePort: 7, state: "ESTABLISHED", unacknowledgedBytes: 2304,
                figures: ["snd_una": 1, "snd_nxt": 3457, "rcv_nxt": 1, "sacked_segs": 1, "lost_segs": 0, "reneged": 0, "outstanding_limit": 128, "since_progress_ms": 2500],
                inRecovery: true, sacked: ["2305-3457"], peerIsPilotHost: false),
        ])
        let diagnosedRow = try XCTUnwrap(diagnosed.json["connections"]?.arrayValue?.first?.objectValue)
        XCTAssertTrue(Set(ConnectionList.diagnosticKeys + ["sacked", "peer_pilot_host"]).isSubset(of: Set(diagnosedRow.keys)))
        XCTAssertEqual(try DataControl.Connections.data(of: .ok(diagnosed.json)), diagnosed)
        try assertReply(
            DataControl.Peers.self,
            PeerList(peers: [
                .init(nodeID: 7, address: "0:0000.0000.0007", endpoint: "127.0.0.1:37000", trusted: true, relayed: false, lastHeardSeconds: 1.5, pathSeconds: 42.5),
                .init(nodeID: 8, address: "0:0000.0000.0008", endpoint: "", trusted: true, relayed: true, lastHeardSeconds: 0.2, pathSeconds: 3),
            ]),
            #"{"encrypted":2,"peers":[{"address":"0:0000.0000.0007","authenticated":true,"encrypted":true,"endpoint":"127.0.0.1:37000","last_heard_seconds":1.5,"node_id":7,"path":"direct","path_seconds":42.5,"relay":false,"trusted":true},"#
                + #"{"address":"0:0000.0000.0008","authenticated":true,"encrypted":true,"endpoint":"","last_heard_seconds":0.2,"node_id":8,"path":"relay","path_seconds":3,"relay":true,"trusted":true}],"total":2}"#)
        try assertReply(DataControl.Peers.self, PeerList(peers: []), #"{"encrypted":0,"peers":[],"total":0}"#)
    }

    func testAMistypedProbeNamesItsPlace() {
        XCTAssertThrowsError(try DataControl.Ping.data(of: .ok(["target": "b", "to": "t", "timeout": false, "results": [["seq": 0, "rtt_ms": "1"]]]))) {
            XCTAssertEqual(($0 as? ControlFailure)?.message, "ping reply results[0]: rtt_ms must be a number")
        }
    }
}
