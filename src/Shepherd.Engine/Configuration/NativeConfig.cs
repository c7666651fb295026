using Shepherd.Engine.Native;

namespace Shepherd.Engine.Configuration;

/// <summary>The <c>native</c> section: how native batches are watched at their provider.</summary>
public sealed class NativeConfig
{
    /// <summary>Seconds between two looks at a provider batch; the default is 30.</summary>
    public double? PollSeconds { get; set; }

    /// <summary>The native options with this section's values over the defaults.</summary>
    public NativeBatchOptions ToOptions() => PollSeconds is { } seconds
        ? new NativeBatchOptions { PollInterval = TimeSpan.FromSeconds(seconds) }
        : new NativeBatchOptions();
}
