using Microsoft.Data.Sqlite;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Cli.Tests;

/// <summary>
/// The durability promise, checked with a real child process and SIGKILL: whenever the process
/// dies, the same command finishes the batch; every custom_id is answered once; the only
/// requests sent twice are those in flight at the kill, and nothing already recorded is sent again.
/// </summary>
public sealed class ResumeAfterKillTests : IDisposable
{
    private const int Concurrency = 8;
    private readonly TempDirectory _folder = new();

    public void Dispose() => _folder.Dispose();

    [Fact]
    public async Task KilledAgainAndAgain_TheSameCommandFinishes_AndOnlyInFlightRequestsAreSentTwice()
    {
        var requests = BatchFiles.OpenAIChat(400);
        var input = BatchFiles.Write(_folder.File("batch.jsonl"), requests);
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(15), Jitter = TimeSpan.FromMilliseconds(10) });
        string[] command =
        [
            "run", input, "--provider", "openai", "--base-url", new Uri(server.BaseUrl, "v1").ToString(), "--api-key", "k",
            "--concurrency", Concurrency.ToString(System.Globalization.CultureInfo.InvariantCulture), "--progress", "none",
        ];
        var committedBefore = new HashSet<string>();
        var sentBefore = new Dictionary<ulong, int>();

        foreach (var killAfter in new[] { 1, 60, 150 })
        {
            var target = server.Provider.Stats().Requests + killAfter;
            var reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            void OnRequest(long total)
            {
                if (total >= target)
                {
                    reached.TrySetResult();
                }
            }

            server.Provider.RequestReceived += OnRequest;
            using (var run = ShepherdProcess.Start(_folder.Path, command))
            {
                await reached.Task.WaitAsync(TimeSpan.FromMinutes(2), TestContext.Current.CancellationToken);
                await run.KillAsync();
            }

            server.Provider.RequestReceived -= OnRequest;
            var sentNow = server.Provider.ReceivedCounts();
            var committedNow = await CommittedAsync(input + ".shepherd.db");
            AssertOnlyInFlightWorkWasRepeated(requests, sentBefore, committedBefore, sentNow);
            Assert.Superset(committedBefore, committedNow);
            committedBefore = committedNow;
            sentBefore = new Dictionary<ulong, int>(sentNow);
        }

        using (var last = ShepherdProcess.Start(_folder.Path, command))
        {
            var result = await last.WaitAsync();
            Assert.True(result.ExitCode == 0, result.ToString());
            Assert.Contains("Resuming", result.Stderr, StringComparison.Ordinal);
        }

        AssertOnlyInFlightWorkWasRepeated(requests, sentBefore, committedBefore, server.Provider.ReceivedCounts());
        var answered = BatchFiles.ReadJsonl(_folder.File("batch.out.jsonl")).Select(l => l.GetProperty("custom_id").GetString()).ToList();
        Assert.Equal(requests.Select(r => r.CustomId), answered);
        Assert.Empty(File.ReadAllText(_folder.File("batch.errors.jsonl")));
        var received = server.Provider.ReceivedCounts();
        Assert.All(requests, r => Assert.True(received.ContainsKey(r.Key)));
        var duplicates = received.Values.Sum(n => n - 1);
        TestContext.Current.TestOutputHelper?.WriteLine($"{duplicates} requests were sent twice over three kills");
        // Three kills, each repeating at most what was unrecorded: in flight, or answered and not yet committed.
        Assert.InRange(duplicates, 0, 3 * 2 * Concurrency);
    }

    [Theory]
    [InlineData("INT", false)]
    [InlineData("TERM", false)]
    [InlineData("INT", true)]
    public async Task ASignal_StopsTheRunGracefully_AndTheCommandItNamesFinishesIt(string signal, bool fresh)
    {
        var requests = BatchFiles.OpenAIChat(200);
        var input = BatchFiles.Write(_folder.File("batch.jsonl"), requests);
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(20) });
        string[] command = ["run", input, "--provider", "openai", "--base-url", new Uri(server.BaseUrl, "v1").ToString(), "--api-key", "k", "--concurrency", "4", "--progress", "none", .. fresh ? ["--fresh"] : Array.Empty<string>()];
        var reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        server.Provider.RequestReceived += total =>
        {
            if (total >= 40)
            {
                reached.TrySetResult();
            }
        };

        ProcessResult stopped;
        using (var run = ShepherdProcess.Start(_folder.Path, command))
        {
            await reached.Task.WaitAsync(TimeSpan.FromMinutes(2), TestContext.Current.CancellationToken);
            await run.SignalAsync(signal);
            stopped = await run.WaitAsync();
        }

        var saved = await CommittedAsync(input + ".shepherd.db");
        // After --fresh, running the same command would start over: the advice names one without it.
        var advised = fresh ? AdvisedCommand(stopped.Stderr) : command;
        var finished = await ShepherdProcess.RunAsync(_folder.Path, advised);

        Assert.True(stopped.ExitCode == 130, stopped.ToString());
        Assert.Contains($"Interrupted: {saved.Count} of 200 requests done and saved", stopped.Stderr, StringComparison.Ordinal);
        Assert.InRange(saved.Count, 30, 199);
        Assert.True(finished.ExitCode == 0, finished.ToString());
        Assert.Equal(requests.Select(r => r.CustomId), BatchFiles.ReadJsonl(_folder.File("batch.out.jsonl")).Select(l => l.GetProperty("custom_id").GetString()));
        Assert.InRange(server.Provider.Stats().Duplicates, 0, 4);
        Assert.DoesNotContain("--fresh", advised);
    }

    /// <summary>The words of the command that the message after an interruption tells the user to run.</summary>
    private static string[] AdvisedCommand(string stderr)
    {
        const string Lead = "without --fresh to resume: shepherd ";
        var start = stderr.IndexOf(Lead, StringComparison.Ordinal);
        Assert.True(start >= 0, stderr);
        return stderr[(start + Lead.Length)..].Split('\n')[0].Trim().Split(' ').Select(word => word == "\"$KEY\"" ? "k" : word).ToArray();
    }

    /// <summary>
    /// Between two looks, a request may be sent again only if it had been sent before and its
    /// answer had not been recorded; an item recorded as done is never sent again.
    /// </summary>
    private static void AssertOnlyInFlightWorkWasRepeated(IReadOnlyList<TestRequest> requests, IReadOnlyDictionary<ulong, int> sentBefore, HashSet<string> committedBefore, IReadOnlyDictionary<ulong, int> sentNow)
    {
        foreach (var request in requests)
        {
            var before = sentBefore.GetValueOrDefault(request.Key);
            var now = sentNow.GetValueOrDefault(request.Key);
            if (committedBefore.Contains(request.CustomId))
            {
                Assert.True(now == before, $"{request.CustomId} was recorded as done, yet sent again");
            }

            // No faults are injected, so nothing is retried: one life of the process sends a request at most once.
            Assert.True(now - before <= 1, $"{request.CustomId} was sent {now - before} times by one process");
        }
    }

    /// <summary>The custom ids whose answers are in the state file, read as a crash left it.</summary>
    internal static async Task<HashSet<string>> CommittedAsync(string statePath)
    {
        await using var connection = new SqliteConnection($"Data Source={statePath};Mode=ReadOnly;Pooling=False");
        await connection.OpenAsync(TestContext.Current.CancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT custom_id FROM items WHERE state IN (2, 3)";
        await using var reader = await command.ExecuteReaderAsync(TestContext.Current.CancellationToken);
        var ids = new HashSet<string>();
        while (await reader.ReadAsync(TestContext.Current.CancellationToken))
        {
            ids.Add(reader.GetString(0));
        }

        return ids;
    }
}
