import KairosKernels

/// The time-decay form applied to an event of age `t` (see DOMAIN.md).
public enum DecayForm: String, Codable, Sendable, CaseIterable {
    /// Every event weighs 1.
    case none
    /// `w(t) = exp(-ln 2 * t / halfLife)`.
    case exponential
    /// `w(t) = max(0, 1 - t / window)`.
    case linear
    /// `w(t) = 1 / (1 + exp(-steepness * (midpoint - t)))`.
    case sigmoid
}

/// A decay form with its parameters (seconds).
public struct DecaySpec: Codable, Sendable, Equatable {
    /// The form.
    public var form: DecayForm
    /// Exponential half-life in seconds.
    public var halfLifeSeconds: Double?
    /// Linear window in seconds.
    public var windowSeconds: Double?
    /// Sigmoid midpoint age in seconds.
    public var midpointSeconds: Double?
    /// Sigmoid steepness per second.
    public var steepnessPerSecond: Double?

    public init(
        form: DecayForm,
        halfLifeSeconds: Double? = nil,
        windowSeconds: Double? = nil,
        midpointSeconds: Double? = nil,
        steepnessPerSecond: Double? = nil
    ) {
        self.form = form
        self.halfLifeSeconds = halfLifeSeconds
        self.windowSeconds = windowSeconds
        self.midpointSeconds = midpointSeconds
        self.steepnessPerSecond = steepnessPerSecond
    }
}

/// What the training data covered.
public struct DataSpan: Codable, Sendable, Equatable {
    /// Oldest event, unix seconds.
    public var firstEventTime: Int64
    /// Newest event, unix seconds (the default decay reference time).
    public var lastEventTime: Int64
    /// Events read.
    public var events: Int
    /// Distinct users.
    public var users: Int
    /// Distinct items.
    public var items: Int

    public init(firstEventTime: Int64, lastEventTime: Int64, events: Int, users: Int, items: Int) {
        self.firstEventTime = firstEventTime
        self.lastEventTime = lastEventTime
        self.events = events
        self.users = users
        self.items = items
    }
}

/// Training metadata, stored as JSON in the `metadata` section.
public struct ModelMetadata: Codable, Sendable, Equatable {
    /// What produced the file (e.g. "kairos train 0.1", or a placeholder generator that says so).
    public var generator: String
    /// Free-form description.
    public var description: String?
    /// Training algorithm name.
    public var algorithm: String
    /// Numeric hyper-parameters (factors, iterations, regularization, alpha, seed...).
    public var parameters: [String: Double]
    /// Decay used for confidences, trending and history weights; also the serving default for real-time events.
    public var decay: DecaySpec
    /// What the training data covered.
    public var dataSpan: DataSpan?
    /// Offline metrics: protocol -> method -> metric (e.g. "ndcg@10") -> value.
    public var evaluation: [String: [String: [String: Double]]]
    /// Serving blend weights: protocol -> component (`dot`, `trending`, `buy-again`, `category`) -> weight.
    /// Optional (absent in files without a learned blend); see MODEL_FORMAT.md for how each component is scaled.
    public var scoring: [String: [String: Double]]?
    /// The largest magnitude a `scoring` weight may have: the trainer's grid stops at 100, and with factors and biases
    /// within ±2^40 a blend of weights this size stays finite in float32.
    public static let maxBlendWeight: Double = 1e6

    /// Why the metadata cannot serve factors of `dimensions` columns, or nil: a `scoring` weight not finite or past
    /// ±``maxBlendWeight`` (every blended score would be infinite or NaN), a `parameters.realtime_weight` outside
    /// 0...``maxBlendWeight``, or a `parameters.realtime_fold` other than 0 or 1, or 1 (least squares) without an
    /// `alpha` of 0...1e6 and a `regularization` above 0 and at most 1e12, or with more than
    /// ``LeastSquaresFold/maxDimensions`` factors.
    public func servingProblem(dimensions: Int) -> String? {
        for (proto, weights) in (scoring ?? [:]).sorted(by: { $0.key < $1.key }) {
            for (component, w) in weights.sorted(by: { $0.key < $1.key }) where !(abs(w) <= Self.maxBlendWeight) {
                return "scoring weight \(proto).\(component) is \(w), not within ±1e6"
            }
        }
        if let w = parameters["realtime_weight"], !(w >= 0 && w <= Self.maxBlendWeight) {
            return "parameters.realtime_weight is \(w), not 0 to 1e6"
        }
        if let fold = parameters["realtime_fold"] {
            guard fold == 0 || fold == 1 else { return "parameters.realtime_fold is \(fold), not 0 (additive) or 1 (least squares)" }
            if fold == 1 {
                let alpha = parameters["alpha"] ?? .nan
                let lambda = parameters["regularization"] ?? .nan
                guard alpha >= 0 && alpha <= Self.maxBlendWeight else {
                    return "parameters.realtime_fold 1 needs parameters.alpha from 0 to 1e6, not \(alpha)"
                }
                guard lambda > 0 && lambda <= 1e12 else {
                    return "parameters.realtime_fold 1 needs parameters.regularization above 0 and at most 1e12, not \(lambda)"
                }
                guard dimensions <= LeastSquaresFold.maxDimensions else {
                    return "parameters.realtime_fold 1 is for at most \(LeastSquaresFold.maxDimensions) factors, not \(dimensions)"
                }
            }
        }
        return nil
    }

    /// Push-timing test metrics of the activity profiles: profile kind (`profile`, `population`, `raw-profile`) ->
    /// metric (`hit@3`, `log_likelihood`, their `_se`, `users`). Optional (absent without a test evaluation).
    public var timing: [String: [String: Double]]?

    public init(
        generator: String,
        description: String? = nil,
        algorithm: String,
        parameters: [String: Double] = [:],
        decay: DecaySpec = DecaySpec(form: .none),
        dataSpan: DataSpan? = nil,
        evaluation: [String: [String: [String: Double]]] = [:],
        scoring: [String: [String: Double]]? = nil,
        timing: [String: [String: Double]]? = nil
    ) {
        self.generator = generator
        self.description = description
        self.algorithm = algorithm
        self.parameters = parameters
        self.decay = decay
        self.dataSpan = dataSpan
        self.evaluation = evaluation
        self.scoring = scoring
        self.timing = timing
    }
}
