using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Pricing;

/// <summary>How <see cref="BatchEstimator"/> prices an input, and the limits its time is bounded by.</summary>
public sealed class EstimateOptions
{
    /// <summary>
    /// Price every request as if it named this model (tokenized and priced as it); null prices
    /// each request as the model it names.
    /// </summary>
    public string? Model { get; set; }

    /// <summary>
    /// The url every line must name, as a batch created for one endpoint requires; null takes
    /// the first valid line's url, as a batch file does.
    /// </summary>
    public string? Endpoint { get; set; }

    /// <summary>
    /// Requests per minute of each model's lane. When given it wins over <see cref="Upstreams"/>.
    /// <value>The default is null: the upstreams' limits, if any.</value>
    /// </summary>
    public long? RequestsPerMinute { get; set; }

    /// <summary>
    /// Tokens per minute (prompt plus expected output) of each model's lane. When given it wins
    /// over <see cref="Upstreams"/>.
    /// <value>The default is null: the upstreams' limits, if any.</value>
    /// </summary>
    public long? TokensPerMinute { get; set; }

    /// <summary>
    /// The upstreams whose configured lane limits bound the time, where <see cref="RequestsPerMinute"/>
    /// or <see cref="TokensPerMinute"/> are not given. Several upstreams serving a model add up;
    /// a limit that one of them leaves unset (to be learned from the provider) is unknown.
    /// <value>The default is none.</value>
    /// </summary>
    public IReadOnlyList<UpstreamOptions> Upstreams { get; set; } = [];

    /// <summary>
    /// The output expected of a request that names no output limit (<c>max_tokens</c>,
    /// <c>max_completion_tokens</c>, <c>max_output_tokens</c>), as a share of its prompt tokens,
    /// rounded up: a batch job's answer is typically shorter than what it reads (a label, a
    /// summary, an extraction).
    /// <value>The default is 0.5.</value>
    /// </summary>
    public double AssumedOutputRatio { get; set; } = 0.5;

    /// <summary>
    /// The most output tokens assumed for one request that names no output limit.
    /// <value>The default is 1,024, the answer length Shepherd asks for when an inline prompt goes to <c>/v1/messages</c>.</value>
    /// </summary>
    public int MaxAssumedOutputTokens { get; set; } = 1024;

    /// <summary>
    /// A deadline: with one, the estimate also prices each tier (realtime, native, flex) and the
    /// planner's mix for it (<see cref="BatchEstimate.Plan"/>).
    /// <value>The default is none.</value>
    /// </summary>
    public TimeSpan? Deadline { get; set; }

    /// <summary>
    /// How the planner would keep its margin before the deadline.
    /// <value>The default is the defaults of <see cref="Native.NativeBatchOptions"/>.</value>
    /// </summary>
    public Native.NativeBatchOptions Native { get; set; } = new();

    /// <summary>
    /// An answer cache to look each request up in (as a run would, in realtime): what it would
    /// answer is counted apart (<see cref="BatchEstimate.Cached"/>), neither priced nor timed.
    /// <value>The default is none.</value>
    /// </summary>
    public Storage.AnswerCache? Cache { get; set; }

    /// <summary>The tenant whose keys the <see cref="Cache"/> is looked up by; null for a node without tenants.</summary>
    public string? Tenant { get; set; }

    /// <summary>
    /// How the batch would use the <see cref="Cache"/>: <see cref="Shepherd.Engine.Model.CacheUse.Unsampled"/> looks
    /// up no request that asks for sampling, <see cref="Shepherd.Engine.Model.CacheUse.Off"/> none.
    /// <value>The default is <see cref="Shepherd.Engine.Model.CacheUse.All"/>.</value>
    /// </summary>
    public Shepherd.Engine.Model.CacheUse CacheUse { get; set; } = Shepherd.Engine.Model.CacheUse.All;

    /// <summary>
    /// The longest line read, in bytes; a longer one is an error.
    /// <value>The default is 32 MiB, as for a batch.</value>
    /// </summary>
    public int MaxLineBytes { get; set; } = 32 * 1024 * 1024;

    /// <summary>
    /// The most errors kept; the lines after them are still priced and counted as invalid.
    /// <value>The default is 100.</value>
    /// </summary>
    public int MaxErrors { get; set; } = 100;

    internal EstimateOptions Validated()
    {
        if (Model is { } model && string.IsNullOrWhiteSpace(model))
        {
            throw new ArgumentException("The model to price as cannot be blank.", nameof(Model));
        }

        if (Endpoint is { } endpoint && Formats.BatchEndpoints.Find(endpoint) is null)
        {
            throw new ArgumentException($"The endpoint {endpoint} is not one of {string.Join(", ", Formats.BatchEndpoints.All)}.", nameof(Endpoint));
        }

        if (RequestsPerMinute is { } rpm)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(rpm, 1L, nameof(RequestsPerMinute));
        }

        if (TokensPerMinute is { } tpm)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(tpm, 1L, nameof(TokensPerMinute));
        }

        ArgumentNullException.ThrowIfNull(Upstreams);
        ArgumentNullException.ThrowIfNull(Native);
        if (Deadline is { } deadline)
        {
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(deadline, TimeSpan.Zero, nameof(Deadline));
        }

        if (!double.IsFinite(AssumedOutputRatio) || AssumedOutputRatio < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(AssumedOutputRatio), AssumedOutputRatio, "The output ratio is a number of 0 or more.");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(MaxAssumedOutputTokens);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxLineBytes, 16);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxErrors, 1);
        var copy = (EstimateOptions)MemberwiseClone();
        copy.Upstreams = [.. Upstreams];
        return copy;
    }
}
