using System.Diagnostics;
using System.Text;

namespace Shepherd.Cli.Tests;

/// <summary>The finished run of a <c>shepherd</c> child process.</summary>
public sealed record ProcessResult(int ExitCode, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {ExitCode}\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";
}

/// <summary>Runs the real <c>shepherd</c> command as a child process, as a user would.</summary>
public sealed class ShepherdProcess : IDisposable
{
    private static readonly string ShepherdDll = Path.Combine(AppContext.BaseDirectory, "shepherd.dll");
    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();
    private readonly List<(string Text, TaskCompletionSource<string> Seen)> _awaited = [];

    private ShepherdProcess(Process process) => _process = process;

    public static ShepherdProcess Start(string workingDirectory, IEnumerable<string> args, IReadOnlyDictionary<string, string?>? environment = null)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(ShepherdDll);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        // A developer's own keys must not reach the simulator, nor be needed by a test.
        start.Environment.Remove("OPENAI_API_KEY");
        start.Environment.Remove("ANTHROPIC_API_KEY");
        // Each test's runs share an answer cache of their own, in the test's folder: never one of another test, or the developer's.
        start.Environment["XDG_CACHE_HOME"] = Path.Combine(workingDirectory, ".cache");
        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
        {
            start.Environment[name] = value;
        }

        var process = new ShepherdProcess(new Process { StartInfo = start });
        process._process.OutputDataReceived += (_, e) => process.OnStdout(e.Data);
        process._process.ErrorDataReceived += (_, e) => Append(process._stderr, e.Data);
        process._process.Start();
        process._process.BeginOutputReadLine();
        process._process.BeginErrorReadLine();
        return process;
    }

    public static async Task<ProcessResult> RunAsync(string workingDirectory, params string[] args)
    {
        using var process = Start(workingDirectory, args);
        return await process.WaitAsync();
    }

    /// <summary>Waits for the process to exit; a run that takes minutes is a failure, not a hang of the suite.</summary>
    public async Task<ProcessResult> WaitAsync()
    {
        await _process.WaitForExitAsync(TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromMinutes(3), TestContext.Current.CancellationToken);
        lock (_stdout)
        {
            return new ProcessResult(_process.ExitCode, _stdout.ToString(), _stderr.ToString());
        }
    }

    /// <summary>Completes with the first stdout line that contains <paramref name="text"/>.</summary>
    public Task<string> WaitForOutputAsync(string text)
    {
        var seen = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_stdout)
        {
            var earlier = _stdout.ToString().Split('\n').FirstOrDefault(line => line.Contains(text, StringComparison.Ordinal));
            if (earlier is not null)
            {
                return Task.FromResult(earlier);
            }

            _awaited.Add((text, seen));
        }

        return seen.Task.WaitAsync(TimeSpan.FromMinutes(1), TestContext.Current.CancellationToken);
    }

    /// <summary>Sends a POSIX signal (INT, TERM) by name, as a terminal or a service manager would.</summary>
    public async Task SignalAsync(string signal)
    {
        using var kill = Process.Start("kill", ["-s", signal, _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        await kill.WaitForExitAsync(TestContext.Current.CancellationToken);
    }

    /// <summary>SIGKILL: no handler runs, nothing is flushed.</summary>
    public async Task KillAsync()
    {
        _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync(TestContext.Current.CancellationToken);
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }

        _process.Dispose();
    }

    private void OnStdout(string? line)
    {
        Append(_stdout, line);
        lock (_stdout)
        {
            foreach (var (text, seen) in _awaited.Where(a => line?.Contains(a.Text, StringComparison.Ordinal) == true))
            {
                seen.TrySetResult(line!);
            }
        }
    }

    private static void Append(StringBuilder output, string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (output)
        {
            output.AppendLine(line);
        }
    }
}
