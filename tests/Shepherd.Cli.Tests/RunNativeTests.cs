using System.Text.Json;
using Microsoft.Data.Sqlite;
using Shepherd.Server.Tests;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Cli.Tests;

/// <summary>
/// <c>shepherd run --deadline --mode</c> as a user runs it: a Shepherd server with both batch APIs
/// is the provider, declared with <c>batchApi: true</c>; killed or stopped, the same command
/// resumes polling the job it had handed over, and never hands the requests over twice.
/// </summary>
public sealed class RunNativeTests : IDisposable
{
    private readonly TempDirectory _folder = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _folder.Dispose();

    [Fact]
    public async Task ABatchApiThatRefusesTheKey_StopsTheRunSayingSo_WithoutAStackTrace()
    {
        await using var simulator = await Simulators.StartHttpAsync(new SimulatorOptions { ApiKey = "right-key" });
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(4));
        var config = _folder.File("shepherd.json");
        File.WriteAllText(config, $$$"""
            {"upstreams": [{"name": "sim", "baseUrl": "{{{new Uri(simulator.BaseUrl, "v1")}}}", "apiKey": "wrong-key", "batchApi": true}],
             "native": {"pollSeconds": 1} }
            """);

        var result = await ShepherdProcess.RunAsync(_folder.Path, "run", input, "--config", config, "--mode", "native", "--progress", "none");

        Assert.True(result.ExitCode == 5, result.ToString());
        Assert.Contains("sim refused the API key of its batch API", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("Fix the upstream's apiKey", result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.Stderr, StringComparison.Ordinal);
        Assert.Equal(0, simulator.Provider.Stats().Batch.Jobs);
    }

    [Fact]
    public async Task ModeNative_HandsTheBatchToTheProvidersBatchApi_AndAKilledRunResumesPollingTheSameJob()
    {
        // One request at a time, 200 ms each: the provider is still at it when the run is killed.
        await using var provider = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(200) }, engine: e => e.Dispatch.Concurrency = 1);
        var requests = BatchFiles.OpenAIChat(6);
        var input = BatchFiles.Write(_folder.File("in.jsonl"), requests);
        var command = Command(provider, input);

        using (var first = ShepherdProcess.Start(_folder.Path, command))
        {
            await Poll.UntilAsync(() => Task.FromResult(JobsRecorded(input + ".shepherd.db")), c => c == 1, TimeSpan.FromMinutes(1), Ct);
            await first.KillAsync();
        }

        var again = await ShepherdProcess.RunAsync(_folder.Path, command);

        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.Contains("Resuming", again.Stderr, StringComparison.Ordinal);
        var summary = JsonDocument.Parse(again.Stdout).RootElement;
        Assert.Equal(("native", 6L, 6L), (summary.GetProperty("mode").GetString(), summary.GetProperty("succeeded").GetInt64(), summary.GetProperty("tiers").GetProperty("native").GetProperty("requests").GetInt64()));
        Assert.True(summary.GetProperty("saved_usd").GetDecimal() > 0);
        Assert.Equal(requests.Select(r => r.CustomId), BatchFiles.ReadJsonl(_folder.File("in.out.jsonl")).Select(l => l.GetProperty("custom_id").GetString()));
        // One job at the provider, across the kill, and each of its lines run once.
        var (_, jobs) = await provider.GetAsync("/v1/batches");
        Assert.Equal(6, Assert.Single(jobs.GetProperty("data").EnumerateArray()).GetProperty("request_counts").GetProperty("total").GetInt64());
        Assert.Equal(6, provider.Simulator.Provider.Stats().Requests);
    }

    [Fact]
    public async Task ASignal_StopsTheRun_LeavingTheJobAtTheProviderAndRecorded_AndTheSameCommandFinishesIt()
    {
        await using var provider = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(300) }, engine: e => e.Dispatch.Concurrency = 1);
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(8));
        var command = Command(provider, input);

        ProcessResult stopped;
        using (var first = ShepherdProcess.Start(_folder.Path, command))
        {
            await Poll.UntilAsync(() => Task.FromResult(JobsRecorded(input + ".shepherd.db")), c => c == 1, TimeSpan.FromMinutes(1), Ct);
            await first.SignalAsync("TERM");
            stopped = await first.WaitAsync();
        }

        Assert.True(stopped.ExitCode == 130, stopped.ToString());
        Assert.Contains("Interrupted", stopped.Stderr, StringComparison.Ordinal);
        var (_, atStop) = await provider.GetAsync("/v1/batches");
        Assert.NotEqual("cancelled", Assert.Single(atStop.GetProperty("data").EnumerateArray()).GetProperty("status").GetString());
        Assert.Equal(1, JobsRecorded(input + ".shepherd.db"));

        var finished = await ShepherdProcess.RunAsync(_folder.Path, command);

        Assert.True(finished.ExitCode == 0, finished.ToString());
        Assert.Equal(8, BatchFiles.ReadJsonl(_folder.File("in.out.jsonl")).Count);
        var (_, jobs) = await provider.GetAsync("/v1/batches");
        Assert.Single(jobs.GetProperty("data").EnumerateArray());
    }

    [Fact]
    public async Task ASavedBatch_KeepsItsModeAndDeadline_UnlessTheyAreGivenAgain()
    {
        // An OpenAI-compatible server without a batch API: realtime unless asked otherwise.
        await using var simulator = await Simulators.StartHttpAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(40) });
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(60));
        string[] Run(params string[] more) =>
            ["run", input, "--base-url", new Uri(simulator.BaseUrl, "v1").ToString(), "--api-key", "k", "--concurrency", "1", "--progress", "none", "--json", .. more];

        var first = await StopAfterAsync(Run("--deadline", "6h"), simulator, 5);
        var second = await StopAfterAsync(Run("--mode", "auto", "--deadline", "2h"), simulator, 15);
        var (mode, deadline) = Plan(input + ".shepherd.db");
        var last = await ShepherdProcess.RunAsync(_folder.Path, Run());

        Assert.True(first.ExitCode == 130, first.ToString());
        Assert.True(second.ExitCode == 130, second.ToString());
        Assert.Contains("now runs in mode auto, to be done by", second.Stderr, StringComparison.Ordinal);
        Assert.Equal((3, TimeSpan.FromHours(2)), (mode, deadline));
        Assert.True(last.ExitCode == 0, last.ToString());
        Assert.DoesNotContain("now runs in mode", last.Stderr, StringComparison.Ordinal);
        var summary = JsonDocument.Parse(last.Stdout).RootElement;
        Assert.Equal(("auto", 60L, 0L), (summary.GetProperty("mode").GetString(), summary.GetProperty("succeeded").GetInt64(), summary.GetProperty("tiers").GetProperty("native").GetProperty("requests").GetInt64()));
    }

    [Theory]
    [InlineData("native", "--mode native: no upstream with a native batch API serves the model gpt-4.1-mini at /v1/chat/completions. Declare it with \"batchApi\": true")]
    [InlineData("flex", "--mode flex: no upstream that offers the flex tier serves the model gpt-4.1-mini. Declare it with \"flex\": true")]
    [InlineData("sometimes", "--mode is one of realtime, native, flex, auto; got 'sometimes'.")]
    public async Task AModeNoUpstreamServes_IsRefusedNamingWhatIsMissing_AndLeavesNothing(string mode, string message)
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(2));

        // An OpenAI-compatible server that is not OpenAI's own has no batch API unless declared; nothing listens here anyway.
        var result = await ShepherdProcess.RunAsync(_folder.Path, "run", input, "--base-url", "http://127.0.0.1:1/v1", "--api-key", "k", "--deadline", "6h", "--mode", mode);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains(message, result.Stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(input + ".shepherd.db"));
    }

    /// <summary><c>shepherd run</c> of <paramref name="input"/> with a deadline in mode native, against <paramref name="provider"/> as an upstream with a batch API looked at five times a second.</summary>
    private string[] Command(RunningServer provider, string input)
    {
        var config = _folder.File("shepherd.json");
        File.WriteAllText(config, $$"""
            {
              "upstreams": [ { "name": "provider", "provider": "openai", "baseUrl": "{{new Uri(provider.BaseUrl, "v1")}}", "apiKey": "{{RunningServer.Key}}", "batchApi": true } ],
              "native": { "pollSeconds": 0.2 }
            }
            """);
        return ["run", input, "--config", config, "--deadline", "6h", "--mode", "native", "--progress", "none", "--json"];
    }

    /// <summary>Runs <paramref name="command"/> until the simulator has had <paramref name="requests"/> more requests, then stops it with SIGTERM.</summary>
    private async Task<ProcessResult> StopAfterAsync(string[] command, SimulatorServer simulator, long requests)
    {
        var target = simulator.Provider.Stats().Requests + requests;
        using var run = ShepherdProcess.Start(_folder.Path, command);
        await Poll.UntilAsync(() => Task.FromResult(simulator.Provider.Stats().Requests >= target), TimeSpan.FromMinutes(1), Ct);
        await run.SignalAsync("TERM");
        return await run.WaitAsync();
    }

    /// <summary>The stored mode (its number) and deadline, counted from the creation, of the one batch of a state file.</summary>
    private static (long Mode, TimeSpan Deadline) Plan(string statePath)
    {
        using var connection = new SqliteConnection($"Data Source={statePath};Mode=ReadOnly;Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT mode, expires_at - created_at FROM batches";
        using var reader = command.ExecuteReader();
        Assert.True(reader.Read());
        return (reader.GetInt64(0), TimeSpan.FromMilliseconds(reader.GetInt64(1)));
    }

    /// <summary>How many provider jobs the run's state file records, read as a kill may leave it (0 before the file has its tables).</summary>
    private static long JobsRecorded(string statePath)
    {
        if (!File.Exists(statePath))
        {
            return 0;
        }

        using var connection = new SqliteConnection($"Data Source={statePath};Mode=ReadOnly;Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT COUNT(*) FROM sqlite_master WHERE name = 'native_jobs'";
        if ((long)command.ExecuteScalar()! == 0)
        {
            return 0;
        }

        command.CommandText = "SELECT COUNT(*) FROM native_jobs";
        return (long)command.ExecuteScalar()!;
    }
}
