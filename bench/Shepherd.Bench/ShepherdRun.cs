using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace Shepherd.Bench;

/// <summary>What one <c>shepherd run</c> child process reported, and how long it took from start to exit.</summary>
/// <param name="WallSeconds">Process start to exit.</param>
/// <param name="ExitCode">The process's exit code.</param>
/// <param name="Summary">Its <c>--json</c> summary.</param>
internal sealed record ShepherdRun(double WallSeconds, int ExitCode, JsonElement Summary)
{
    /// <summary>Runs <c>shepherd run FILE --json --fresh</c> against <paramref name="baseUrl"/> with more arguments.</summary>
    public static async Task<ShepherdRun> StartAsync(string input, Uri baseUrl, params string[] more)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[]
        {
            Path.Combine(AppContext.BaseDirectory, "shepherd.dll"), "run", input, "--provider", "openai",
            "--base-url", new Uri(baseUrl, "v1").ToString(), "--api-key", "bench", "--progress", "none", "--json", "--fresh",
        }.Concat(more))
        {
            start.ArgumentList.Add(arg);
        }

        var watch = Stopwatch.StartNew();
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        var seconds = watch.Elapsed.TotalSeconds;
        if (process.ExitCode is not (0 or 3))
        {
            throw new InvalidOperationException($"shepherd run failed ({process.ExitCode}): {await stderr}");
        }

        return new ShepherdRun(Math.Round(seconds, 3), process.ExitCode, JsonDocument.Parse(await stdout).RootElement.Clone());
    }

    public double DispatchSeconds => Seconds("wall_seconds");

    public long Number(string name) => Summary.GetProperty(name).GetInt64();

    public double Seconds(string name) => Summary.GetProperty(name).GetDouble();

    public static string Text(long value) => value.ToString(CultureInfo.InvariantCulture);
}
