import ArgumentParser
import KairosCLI

KairosCommand.main()
