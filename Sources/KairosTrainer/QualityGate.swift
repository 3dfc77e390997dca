import KairosModelFormat

/// `--quality-gate`: the checks a model must pass on its own test split before its file is written, so that an
/// automated retrain never hands a broken model (bad input, a bug, a collapsed log) to the server that hot-swaps it.
///
/// The push-timing profiles are checked too: not clearly worse than the population profile at hit@3.
///
/// "Clearly worse" means worse by more than ``tolerance`` standard errors of the difference: a model is not refused for
/// a gap the test users' own noise could make (METRICS.md, "Quality gate").
public enum QualityGate {
    /// Standard errors a shortfall must exceed before it fails the gate.
    public static let tolerance = 2.0
    /// The simple methods the model must not be clearly worse than, per protocol.
    static let baselines = ["popularity", "trending", "buy-again"]

    /// One check and its outcome.
    public struct Check: Sendable, Codable, Hashable {
        /// What was compared, e.g. `exclude-seen: model vs popularity`.
        public var name: String
        /// Whether it passed.
        public var passed: Bool
        /// The numbers behind the outcome, in words.
        public var detail: String
    }

    /// Every check, and whether all passed (the metrics JSON's `qualityGate`).
    public struct Outcome: Sendable, Codable, Hashable {
        /// True when every check passed: the model file is written.
        public var passed: Bool
        /// The checks in order.
        public var checks: [Check]

        /// The outcome of `checks`.
        public init(_ checks: [Check]) {
            self.checks = checks
            passed = checks.allSatisfy(\.passed)
        }

        /// The failed checks in one line, `name: detail; ...` (empty when all passed).
        public var failures: String {
            checks.filter { !$0.passed }.map { "\($0.name): \($0.detail)" }.joined(separator: "; ")
        }
    }

    /// The metrics of the model a new one must not be clearly worse than (the one being served, typically).
    public struct Previous: Sendable {
        /// Where it came from (for messages).
        public var source: String
        /// protocol -> method -> metric -> value, as stored in model metadata `evaluation`.
        public var evaluation: [String: [String: [String: Double]]]
        /// Push-timing metrics (metadata `timing`), when the file has them.
        public var timing: [String: [String: Double]]? = nil

        /// The stored test evaluation of the model file at `path` (its checksums and layout are verified first).
        /// - Throws: ``TrainerError`` `io` when the file is missing, corrupt or not a model file.
        public static func load(path: String) throws(TrainerError) -> Previous {
            do {
                let model = try MappedModel(
                    path: path,
                    options: LoadOptions(storage: .mapped, prefault: false, verifyGolden: false)
                )
                return Previous(source: path, evaluation: model.metadata.evaluation, timing: model.metadata.timing)
            } catch {
                throw TrainerError(.io, "--quality-gate-against \(path): \(error)")
            }
        }
    }

    /// Every check of the gate on a finished test evaluation (`report.test` and `report.comparisons` at cut-off `k`).
    public static func checks(report: TrainReport, k: Int, previous: Previous?) -> [Check] {
        let key = "ndcg@\(k)"
        let evaluated = report.test.filter { ($0.value["model"]?["users"] ?? 0) > 0 }
        guard !evaluated.isEmpty else {
            return [
                Check(
                    name: "test evaluation",
                    passed: false,
                    detail: "no test users (--holdout 0, or no test user was seen in training): "
                        + "nothing to check the model on"
                )
            ]
        }
        var out: [Check] = []
        for (p, methods) in evaluated.sorted(by: { $0.key < $1.key }) {
            let model = methods["model"]!
            let finite = model.values.allSatisfy(\.isFinite)
            out.append(
                Check(
                    name: "\(p): model metrics",
                    passed: finite && model[key] != nil,
                    detail: finite ? "\(key) \(fixed(model[key] ?? .nan))" : "a metric is not a finite number"
                )
            )
            for b in baselines where methods[b] != nil {
                guard let c = report.comparisons[p]?[b], let gain = c["\(key)_gain"], let se = c["\(key)_gain_se"]
                else {
                    out.append(
                        Check(name: "\(p): model vs \(b)", passed: false, detail: "no paired comparison recorded")
                    )
                    continue
                }
                out.append(
                    shortfall(
                        name: "\(p): model vs \(b)",
                        difference: gain,
                        standardError: se,
                        what: "paired gain \(fixed(gain)) (se \(fixed(se)))"
                    )
                )
            }
            guard let previous else { continue }
            let name = "\(p): model vs \(previous.source)"
            guard let old = previous.evaluation[p]?["model"], let oldNDCG = old[key], let oldSE = old["\(key)_se"],
                let newNDCG = model[key], let newSE = model["\(key)_se"]
            else {
                // Nothing comparable (a model trained without a test split, or at another K): said, not failed,
                // so that the first gated deployment after such a model can proceed on the baseline checks.
                out.append(Check(name: name, passed: true, detail: "not compared: it stores no test \(key) for \(p)"))
                continue
            }
            // Different test windows, so unpaired: the two standard errors add in quadrature.
            let se = (oldSE * oldSE + newSE * newSE).squareRoot()
            out.append(
                shortfall(
                    name: name,
                    difference: newNDCG - oldNDCG,
                    standardError: se,
                    what: "\(key) \(fixed(newNDCG)) vs \(fixed(oldNDCG)) (se of the difference \(fixed(se)))"
                )
            )
        }
        // The send time comes from the activity profiles: ones clearly worse than the population's own are broken.
        if let t = report.timingComparisons["population"], let gain = t["hit@3_gain"], let se = t["hit@3_gain_se"] {
            out.append(
                shortfall(
                    name: "push timing: profile vs population",
                    difference: gain,
                    standardError: se,
                    what: "paired hit@3 gain \(fixed(gain)) (se \(fixed(se)))"
                )
            )
            // Against the model being served, like NDCG: unpaired, the test windows differ. A file from before
            // timing was stored has nothing to compare and is not checked.
            if let previous, let old = previous.timing?["profile"], let oldHit = old["hit@3"], let oldSE = old["hit@3_se"],
                let new = report.timing["test"]?["profile"], let newHit = new["hit@3"], let newSE = new["hit@3_se"]
            {
                let se = (oldSE * oldSE + newSE * newSE).squareRoot()
                out.append(
                    shortfall(
                        name: "push timing: profile vs \(previous.source)",
                        difference: newHit - oldHit,
                        standardError: se,
                        what: "hit@3 \(fixed(newHit)) vs \(fixed(oldHit)) (se of the difference \(fixed(se)))"
                    )
                )
            }
        }
        return out
    }

    /// Fails when `difference` is negative by more than ``tolerance`` standard errors (or at all, when the standard
    /// error is 0: every user lost the same amount). A NaN fails.
    static func shortfall(name: String, difference d: Double, standardError se: Double, what: String) -> Check {
        let passed = d.isFinite && se.isFinite && (d >= 0 || -d <= tolerance * se)
        let verdict: String
        if !passed {
            verdict =
                d.isFinite && se.isFinite ? "clearly worse: more than \(fixed(tolerance, 1)) se below" : "not a number"
        } else {
            verdict = d >= 0 ? "not worse" : "within noise"
        }
        return Check(name: name, passed: passed, detail: "\(what): \(verdict)")
    }

    static func fixed(_ x: Double, _ digits: Int = 4) -> String { Format.fixed(x, digits) }
}
