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
    public static Task<ShepherdRun> StartAsync(string input, Uri baseUrl, params string[] more) => RunAsync(input, baseUrl, fresh: true, more);

    /// <summary>Runs <c>shepherd run FILE --json</c> without <c>--fresh</c>: the state file beside the input decides what is sent again.</summary>
    public static Task<ShepherdRun> AgainAsync(string input, Uri baseUrl, params string[] more) => RunAsync(input, baseUrl, fresh: false, more);

    /// <summary>Runs <c>shepherd run FILE --json --fresh</c> with the native binary at <paramref name="binary"/> (a Native AOT publish) rather than the JIT build.</summary>
    public static Task<ShepherdRun> StartNativeAsync(string binary, string input, Uri baseUrl, params string[] more) => RunAsync(input, baseUrl, fresh: true, more, binary);

    private static async Task<ShepherdRun> RunAsync(string input, Uri baseUrl, bool fresh, string[] more, string? binary = null)
    {
        string[] start = fresh ? ["--fresh"] : [];
        string[] program = binary is null ? [Path.Combine(AppContext.BaseDirectory, "shepherd.dll")] : [];
        var (seconds, exitCode, summary) = await ChildProcess.RunJsonAsync(program.Concat(new[]
        {
            "run", input, "--provider", "openai",
            "--base-url", new Uri(baseUrl, "v1").ToString(), "--api-key", "bench", "--progress", "none", "--json",
        }).Concat(start).Concat(more), exit => exit is 0 or 3, "shepherd run", binary ?? "dotnet");
        return new ShepherdRun(Math.Round(seconds, 3), exitCode, summary);
    }

    public double DispatchSeconds => Seconds("wall_seconds");

    public long Number(string name) => Summary.GetProperty(name).GetInt64();

    public double Seconds(string name) => Summary.GetProperty(name).GetDouble();

    public static string Text(long value) => value.ToString(CultureInfo.InvariantCulture);
}

/// <summary>A child process (<c>dotnet</c>, or a native binary) that prints one JSON document on stdout.</summary>
internal static class ChildProcess
{
    /// <summary>Runs <paramref name="program"/> (<c>dotnet</c> unless told) with <paramref name="args"/>; returns its wall time (start to exit), exit code and stdout's JSON, or throws with its stderr when <paramref name="succeeded"/> says no.</summary>
    public static async Task<(double Seconds, int ExitCode, JsonElement Json)> RunJsonAsync(IEnumerable<string> args, Func<int, bool> succeeded, string what, string program = "dotnet")
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        // Every run measures what it sends: an answer cache of its own, empty, never the user's.
        start.Environment["XDG_CACHE_HOME"] = Directory.CreateTempSubdirectory("shepherd-bench-cache-").FullName;
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        var watch = Stopwatch.StartNew();
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        var seconds = watch.Elapsed.TotalSeconds;
        if (!succeeded(process.ExitCode))
        {
            throw new InvalidOperationException($"{what} failed ({process.ExitCode}): {await stderr}");
        }

        using var document = JsonDocument.Parse(await stdout);
        return (seconds, process.ExitCode, document.RootElement.Clone());
    }
}
