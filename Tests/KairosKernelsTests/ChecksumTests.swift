import KairosKernels
import Testing

@Suite struct ChecksumTests {
    /// xxh64 matches the published reference values (from the xxHash project / python-xxhash).
    @Test func xxh64MatchesReferenceValues() {
        func h(_ s: String) -> UInt64 { Array(s.utf8).withUnsafeBytes { Checksum.xxh64($0) } }
        #expect(h("") == 0xEF46_DB37_51D8_E999)
        #expect(h("a") == 0xD24E_C4F1_A98C_6E5B)
        #expect(h("abc") == 0x44BC_2CF5_AD77_0999)
        // 117 bytes: exercises the 32-byte stripes and every tail length.
        #expect(h(String(repeating: "Nobody inspects the spammish repetition", count: 3)) == 0x0367_2E8D_8944_3A6F)
    }
}
