import PilotHost
import PilotTestSupport
import XCTest

final class HostConfigurationTests: XCTestCase {
    func testTheShippedExampleParsesToItsDocumentedValues() throws {
        let path = OfficialPilot.packageRoot().appendingPathComponent("etc/pilot-host/pilot-host.conf").path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var configuration = HostConfiguration()
        try configuration.apply(file: text, source: path)
        XCTAssertEqual(configuration.stateDirectory, "/var/lib/pilot-host")
        XCTAssertEqual(configuration.runtimeDirectory, "/run/pilot-host")
        XCTAssertEqual(configuration.registry, "127.0.0.1:9000")
        XCTAssertEqual(configuration.adminGroup, "pilot-admin")
        XCTAssertTrue(configuration.registryTLS, "the registry is reached over TLS by default under systemd")
        XCTAssertEqual(configuration.busyPoll, 50, "the loop busy-polls 50 µs after traffic, while that pays")
        XCTAssertEqual(HostConfiguration().busyPoll, configuration.busyPoll, "the example shows the default")
        XCTAssertEqual(configuration.connectionLimits.perUser, 64, "the example shows the default")
        XCTAssertNil(try configuration.metricsListener(), "no metrics endpoint unless asked for")
        XCTAssertNil(try HostConfiguration().metricsListener(), "no metrics endpoint unless asked for")
        // Every key the program knows is documented in the example.
        for key in HostConfiguration.keys { XCTAssertTrue(text.contains("\n\(key) ="), "\(key) missing from the example") }
    }

    func testCommentsQuotesAndLaterSourcesWin() throws {
        var configuration = HostConfiguration()
        try configuration.apply(
            file: """
                # comment
                registry = "10.0.0.1:9000"   # trailing comment

                log-level=debug
                """, source: "test.conf")
        XCTAssertEqual(configuration.registry, "10.0.0.1:9000")
        XCTAssertEqual(configuration.logLevel, "debug")
        try configuration.set("registry", "127.0.0.1:19000")  // a flag after the file
        XCTAssertEqual(configuration.registry, "127.0.0.1:19000")
    }

    func testSeveralRegistriesAreAListEachChecked() throws {
        var configuration = HostConfiguration()
        try configuration.set("registry", "10.0.0.1:9000, 10.0.0.2:9000 [::1]:9000")
        XCTAssertEqual(configuration.registries, ["10.0.0.1:9000", "10.0.0.2:9000", "[::1]:9000"])
        XCTAssertThrowsError(try configuration.set("registry", "10.0.0.1:9000, nowhere")) {
            XCTAssertTrue("\($0)".hasPrefix("registry = nowhere: "), "\($0)")
        }
        XCTAssertThrowsError(try configuration.set("registry", " , "))
        XCTAssertEqual(configuration.registries.count, 3, "a refused value changes nothing")
    }

    func testARegistryFingerprintIsHexOfSHA256AndNeedsTLS() throws {
        var configuration = HostConfiguration()
        XCTAssertThrowsError(try configuration.set("registry-fingerprint", "abc"))
        XCTAssertThrowsError(try configuration.set("registry-tls", "maybe"))
        try configuration.set("registry-fingerprint", String(repeating: "AB", count: 32))
        XCTAssertThrowsError(try configuration.registryTLSSettings(), "a pin without TLS is a mistake")
        try configuration.set("registry-tls", "yes")
        XCTAssertEqual(try configuration.registryTLSSettings()?.fingerprint, Array(repeating: 0xAB, count: 32))
        try configuration.set("registry-fingerprint", "")
        XCTAssertEqual(try configuration.registryTLSSettings(), RegistryClient.TLS(), "TLS checked against the trust roots")
    }

    func testAMetricsAddressIsLoopbackUnlessRemoteScrapersAreAllowed() throws {
        var configuration = HostConfiguration()
        try configuration.set("metrics-listen", "127.0.0.1:9464")
        XCTAssertEqual(try configuration.metricsListener()?.description, "127.0.0.1:9464")
        try configuration.set("metrics-listen", "192.0.2.1:9464")
        XCTAssertThrowsError(try configuration.metricsListener()) { error in
            XCTAssertTrue("\(error)".hasPrefix("metrics-listen = 192.0.2.1:9464: metrics address 192.0.2.1:9464 is not loopback"), "\(error)")
        }
        try configuration.set("metrics-allow-remote", "yes")
        XCTAssertEqual(try configuration.metricsListener()?.description, "192.0.2.1:9464")
        XCTAssertThrowsError(try configuration.set("metrics-listen", "9464"))
        XCTAssertThrowsError(try configuration.set("metrics-allow-remote", "perhaps"))
        XCTAssertEqual(configuration.metricsPerIdentity, 0, "no per-identity series unless asked for")
        try configuration.set("metrics-per-identity", "1000")
        XCTAssertEqual(configuration.metricsPerIdentity, 1000)
        XCTAssertThrowsError(try configuration.set("metrics-per-identity", "1001"), "the bound holds")
        XCTAssertThrowsError(try configuration.set("metrics-per-identity", "all"))
    }

    func testMistakesNameTheFileLineAndProblem() {
        var configuration = HostConfiguration()
        XCTAssertThrowsError(try configuration.apply(file: "registry = 1.2.3.4:9000\nregistyr = x", source: "a.conf")) { error in
            XCTAssertEqual(
                String(describing: error),
                "a.conf:2: unknown setting registyr (known: \(HostConfiguration.keys.joined(separator: ", ")))")
        }
        XCTAssertThrowsError(try configuration.apply(file: "state-dir = var/lib", source: "b.conf")) { error in
            XCTAssertEqual(String(describing: error), "b.conf:1: state-dir = var/lib: must be an absolute path")
        }
        XCTAssertThrowsError(try configuration.apply(file: "just words", source: "c.conf")) { error in
            XCTAssertEqual(String(describing: error), "c.conf:1: expected key = value, got: just words")
        }
        for (key, value) in [("listen", "0.0.0.0"), ("beacon", ":9001"), ("registry", "h:70000"), ("log-level", "loud"), ("admin-group", "a b"), ("busy-poll", "-1"), ("busy-poll", "1001"), ("admin-token-file", "token"),
            ("control-connections-per-user", "0"), ("control-connections-per-user", "many"),
        ] {
            XCTAssertThrowsError(try configuration.set(key, value), "\(key) = \(value)")
        }
        XCTAssertEqual(configuration, HostConfiguration(), "nothing was applied from bad input")
    }
}
