using Shepherd.Engine.Native;

namespace Shepherd.Engine.Configuration;

/// <summary>The <c>native</c> section: how native batches are watched at their provider, and the planner's margin before a deadline.</summary>
public sealed class NativeConfig
{
    /// <summary>Seconds between two looks at a provider batch; the default is 30.</summary>
    public double? PollSeconds { get; set; }

    /// <summary>Seconds a provider job the planner cancelled is waited for before its requests go in realtime anyway; the default is 600.</summary>
    public double? CancelGraceSeconds { get; set; }

    /// <summary>Requests per second the planner counts on where no lane limit is configured or learned; the default is 10.</summary>
    public double? AssumedRequestsPerSecond { get; set; }

    /// <summary>The native options with this section's values over the defaults.</summary>
    public NativeBatchOptions ToOptions()
    {
        var options = new NativeBatchOptions();
        if (PollSeconds is { } poll)
        {
            options.PollInterval = TimeSpan.FromSeconds(poll);
        }

        if (CancelGraceSeconds is { } grace)
        {
            options.CancelGrace = TimeSpan.FromSeconds(grace);
        }

        if (AssumedRequestsPerSecond is { } rate)
        {
            options.AssumedRequestsPerSecond = rate;
        }

        return options;
    }
}
