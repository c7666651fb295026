using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Dispatch;

/// <summary>
/// An upstream as the dispatcher uses it: its client, its circuit breaker and the count of its
/// requests in flight. Owned by the dispatcher's loop.
/// </summary>
internal sealed class UpstreamEndpoint(UpstreamClient client, DispatchOptions options)
{
    public UpstreamClient Client { get; } = client;

    public CircuitBreaker Breaker { get; } = new(options.BreakerFailuresToOpen, options.BreakerBreakDuration, options.BreakerMaxBreakDuration);

    public string Name => Client.Options.Name!;

    public int Weight => Client.Options.Weight;

    public UpstreamKind Kind => Client.Kind;

    /// <summary>Requests in flight over all of this upstream's lanes.</summary>
    public int InFlight { get; set; }

    /// <summary>The failures that say the upstream itself is in trouble, as opposed to the request or the rate.</summary>
    public static bool IsOutage(UpstreamResponse response) =>
        response.StatusCode is { } status ? status is 408 or >= 500 : response.FailureCode is FailureCodes.ConnectionError or FailureCodes.RequestTimeout;
}
