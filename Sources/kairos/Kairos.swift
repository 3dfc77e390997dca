import ArgumentParser
import KairosCLI

/// The `kairos` executable: everything lives in KairosCLI.
@main
struct Kairos {
    static func main() async {
        await KairosCommand.main()
    }
}
