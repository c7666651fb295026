using System.Runtime.InteropServices;

namespace Shepherd.Bench;

/// <summary>What the figures were measured on.</summary>
internal sealed record Machine(int Cores, string Os, string Runtime, string Cpu, string Date)
{
    public static Machine Describe() => new(
        Environment.ProcessorCount,
        RuntimeInformation.OSDescription,
        RuntimeInformation.FrameworkDescription,
        File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown"
            : "unknown",
        TimeProvider.System.GetUtcNow().ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture));
}
