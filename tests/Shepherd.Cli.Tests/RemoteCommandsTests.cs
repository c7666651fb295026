using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Shepherd.Server.Tests;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Cli.Tests;

/// <summary>
/// The commands that talk to a Shepherd server (<c>submit</c>, <c>status</c>, <c>wait</c>,
/// <c>results</c>, <c>cancel</c>, <c>list</c>), run as the real <c>shepherd</c> process against a
/// server started here, whose engine sends to the simulated provider over HTTP.
/// </summary>
public sealed class RemoteCommandsTests : IDisposable
{
    /// <summary>Looks at a batch every 0.2 s rather than the client's 2 s, so a wait ends soon after its batch.</summary>
    private const string Poll = "0.2";

    private readonly TempDirectory _folder = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _folder.Dispose();

    [Fact]
    public async Task SubmitWaitJson_CreatesTheBatch_WaitsForIt_AndPrintsTheEndedBatchWithItsCounts()
    {
        await using var server = await RunningServer.StartAsync();
        var input = await WriteBatchAsync("prompts.jsonl", 25);

        var run = await RunAsync(server, "submit", input, "--wait", "--json", "--poll-interval", Poll, "--metadata", "team=search", "--metadata", "run=7");

        Assert.True(run.ExitCode == 0, run.ToString());
        var batch = SingleDocument(run);
        Assert.StartsWith("batch_", batch.GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.Equal("completed", batch.GetProperty("status").GetString());
        Assert.False(batch.GetProperty("timed_out").GetBoolean());
        Assert.Equal(25, batch.GetProperty("total").GetInt64());
        Assert.Equal(25, batch.GetProperty("succeeded").GetInt64());
        Assert.Equal(0, batch.GetProperty("failed").GetInt64());
        Assert.Equal(100, batch.GetProperty("percent").GetDouble());
        Assert.True(batch.GetProperty("input_tokens").GetInt64() > 0, run.ToString());
        Assert.True(batch.GetProperty("output_tokens").GetInt64() > 0, run.ToString());
        Assert.StartsWith("file-", batch.GetProperty("output_file_id").GetString(), StringComparison.Ordinal);
        Assert.NotEqual(JsonValueKind.Null, batch.GetProperty("ended_at").ValueKind);
        Assert.Equal("search", batch.GetProperty("metadata").GetProperty("team").GetString());
        Assert.Equal("7", batch.GetProperty("metadata").GetProperty("run").GetString());
        // Progress and the submitted line go to stderr, so stdout stays one document.
        Assert.Contains("Submitted prompts.jsonl as " + batch.GetProperty("id").GetString(), run.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SubmitWait_WhenSomeRequestsFail_SaysSoAndExitsThree()
    {
        // Prompts over 200 tokens are answered 400: a failure no retry mends.
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(2), ContextTokens = 200 });
        var input = await WriteBatchAsync("mixed.jsonl", 10, longPrompt: 3);

        // The live bar, forced without a terminal, as a person's terminal shows it.
        var run = await RunAsync(server, "submit", input, "--wait", "--poll-interval", Poll, "--progress", "live");

        Assert.True(run.ExitCode == 3, run.ToString());
        Assert.Contains("completed: 9 succeeded, 1 failed of 10", run.Stdout, StringComparison.Ordinal);
        Assert.Contains("shepherd results batch_", run.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SubmitWait_OfARefusedInput_ListsTheBadLinesAndExitsTwo()
    {
        await using var server = await RunningServer.StartAsync();
        var input = _folder.File("broken.jsonl");
        var good = Line(1);
        await File.WriteAllTextAsync(input, $"{good}\n{{not json\n{good.Replace("\"r1\"", "\"r2\"", StringComparison.Ordinal)}\n", Ct);

        var run = await RunAsync(server, "submit", input, "--wait", "--poll-interval", Poll);

        Assert.True(run.ExitCode == 2, run.ToString());
        Assert.Contains("broken.jsonl was not submitted; nothing was uploaded. 1 problem:", run.Stderr, StringComparison.Ordinal);
        Assert.Contains("broken.jsonl:line 2: not valid JSON", run.Stderr, StringComparison.Ordinal);
        Assert.Equal(0, (await RunningServer.SendAsync(server.Http, HttpMethod.Get, "/v1/files")).Body.GetProperty("data").GetArrayLength());
    }

    [Fact]
    public async Task Submit_OfLinesThatDoNotFitTheEndpoint_IsRefusedHere_SayingHowManyProblemsWereNotListed()
    {
        await using var server = await RunningServer.StartAsync();
        var input = BatchFiles.Write(_folder.File("docs.jsonl"), BatchFiles.Anthropic(150));

        var run = await RunAsync(server, "submit", input, "--endpoint", "/v1/chat/completions", "--json");

        Assert.True(run.ExitCode == 2, run.ToString());
        Assert.Contains("docs.jsonl:line 1: ", run.Stderr, StringComparison.Ordinal);
        Assert.Contains("and 50 more problems on later lines, not listed.", run.Stderr, StringComparison.Ordinal);
        var refusal = SingleDocument(run);
        Assert.Equal((100, 50L), (refusal.GetProperty("problems").GetArrayLength(), refusal.GetProperty("more_problems").GetInt64()));
        Assert.Equal(0, (await RunningServer.SendAsync(server.Http, HttpMethod.Get, "/v1/files")).Body.GetProperty("data").GetArrayLength());
    }

    [Fact]
    public async Task StatusListWaitAndCancel_DescribeARunningBatch_ThenStopIt()
    {
        // Two requests at a time, 100 ms each: 1,000 requests would take 50 s, so the batch runs until it is cancelled.
        await using var server = await RunningServer.StartAsync(
            new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(100) }, upstream: u => u.Limits.MaxConcurrency = 2);
        var input = await WriteBatchAsync("slow.jsonl", 1000);
        var submitted = await RunAsync(server, "submit", input, "--json");
        Assert.True(submitted.ExitCode == 0, submitted.ToString());
        var id = SingleDocument(submitted).GetProperty("id").GetString()!;

        var status = await RunAsync(server, "status", id);
        var statusJson = await RunAsync(server, "status", id, "--json");
        var list = await RunAsync(server, "list");
        var listJson = await RunAsync(server, "list", "--json", "--limit", "5");
        var timedOut = await RunAsync(server, "wait", id, "--timeout", "1s", "--poll-interval", Poll);
        var cancel = await RunAsync(server, "cancel", id);
        var ended = await RunAsync(server, "wait", id, "--json", "--poll-interval", Poll);

        Assert.True(status.ExitCode == 0, status.ToString());
        Assert.Contains(id, status.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"progress\s+\d+\.\d% · [\d,]+ of 1,000 done", status.Stdout);
        Assert.Contains("created", status.Stdout, StringComparison.Ordinal);
        Assert.Contains("input file", status.Stdout, StringComparison.Ordinal);

        var described = SingleDocument(statusJson);
        Assert.Equal(id, described.GetProperty("id").GetString());
        Assert.Matches("^(validating|in_progress)$", described.GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.Null, described.GetProperty("ended_at").ValueKind);

        Assert.True(list.ExitCode == 0, list.ToString());
        var row = list.Stdout.Split('\n').Single(line => line.Contains(id, StringComparison.Ordinal));
        Assert.Contains("in_progress", row, StringComparison.Ordinal);
        Assert.Contains("1,000", row, StringComparison.Ordinal);
        Assert.Contains("created", list.Stdout, StringComparison.Ordinal);
        Assert.Equal(id, SingleDocument(listJson).EnumerateArray().Single().GetProperty("id").GetString());

        Assert.True(timedOut.ExitCode == 4, timedOut.ToString());
        Assert.Contains($"{id} is still in_progress", timedOut.Stderr, StringComparison.Ordinal);
        Assert.Contains("goes on on the server", timedOut.Stderr, StringComparison.Ordinal);

        Assert.True(cancel.ExitCode == 0, cancel.ToString());
        Assert.Matches($"{id} (cancelling|cancelled): ", cancel.Stdout);

        Assert.True(ended.ExitCode == 3, ended.ToString());
        var final = SingleDocument(ended);
        Assert.Equal("cancelled", final.GetProperty("status").GetString());
        // Cancelled requests are called cancelled, as the dashboard and run call them, not failed.
        Assert.Equal(0, final.GetProperty("failed").GetInt64());
        Assert.True(final.GetProperty("cancelled").GetInt64() > 0, ended.ToString());
        Assert.Equal(1000, final.GetProperty("succeeded").GetInt64() + final.GetProperty("cancelled").GetInt64());
        var after = await RunAsync(server, "status", id);
        Assert.Matches(@"1,000 done: [\d,]+ succeeded, 0 failed, [\d,]+ cancelled\n", after.Stdout.ReplaceLineEndings("\n"));
    }

    [Fact]
    public async Task Results_AsATable_HaveARowPerRequest_InCsvOnStdout_AndInParquetInAFile()
    {
        await using var server = await RunningServer.StartAsync();
        var input = await WriteBatchAsync("answers.jsonl", 12);
        var submitted = await RunAsync(server, "submit", input, "--wait", "--json", "--poll-interval", Poll);
        var id = SingleDocument(submitted).GetProperty("id").GetString()!;
        var parquet = _folder.File("answers.parquet");

        var csv = await RunAsync(server, "results", id, "--format", "csv");
        var toFile = await RunAsync(server, "results", id, "--format", "parquet", "-o", parquet);
        var refused = await RunAsync(server, "results", id, "--format", "parquet");

        Assert.True(csv.ExitCode == 0, csv.ToString());
        var rows = csv.Stdout.ReplaceLineEndings("\n").Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("custom_id,status,", rows[0], StringComparison.Ordinal);
        Assert.Equal(Enumerable.Range(0, 12).Select(i => $"r{i},succeeded"), rows.Skip(1).Select(r => string.Join(',', r.Split(',').Take(2))));
        Assert.True(toFile.ExitCode == 0, toFile.ToString());
        Assert.Contains($"Wrote 12 rows of {id}", toFile.Stdout, StringComparison.Ordinal);
        await using (var file = File.OpenRead(parquet))
        await using (var reader = await Parquet.ParquetReader.CreateAsync(file, cancellationToken: Ct))
        {
            Assert.Equal(12, reader.OpenRowGroupReader(0).RowCount);
        }

        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("--format parquet writes a file: give it with -o FILE.", refused.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Results_StreamToAFile_AndToStdout_OneLinePerRequest()
    {
        await using var server = await RunningServer.StartAsync();
        var input = await WriteBatchAsync("answers.jsonl", 30);
        var submitted = await RunAsync(server, "submit", input, "--wait", "--json", "--poll-interval", Poll);
        Assert.True(submitted.ExitCode == 0, submitted.ToString());
        var id = SingleDocument(submitted).GetProperty("id").GetString()!;
        var output = _folder.File("results.jsonl");

        var toFile = await RunAsync(server, "results", id, "-o", output);
        var toStdout = await RunAsync(server, "results", id);

        Assert.True(toFile.ExitCode == 0, toFile.ToString());
        Assert.Contains($"Wrote 30 results of {id}", toFile.Stdout, StringComparison.Ordinal);
        Assert.False(File.Exists(output + ".partial"));
        var fromFile = (await File.ReadAllLinesAsync(output, Ct)).Select(Parse).ToList();
        Assert.True(toStdout.ExitCode == 0, toStdout.ToString());
        Assert.Equal("", toStdout.Stderr);
        var fromStdout = toStdout.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(Parse).ToList();

        var expected = Enumerable.Range(0, 30).Select(i => $"r{i}").ToList();
        Assert.Equal(expected, fromFile.Select(CustomId).ToList());
        Assert.Equal(expected, fromStdout.Select(CustomId).ToList());
        Assert.All(fromStdout, line => Assert.Equal(200, line.GetProperty("response").GetProperty("status_code").GetInt32()));
        Assert.Equal(
            fromFile.Select(l => l.GetProperty("response").GetProperty("body").GetProperty("id").GetString()),
            fromStdout.Select(l => l.GetProperty("response").GetProperty("body").GetProperty("id").GetString()));
    }

    [Fact]
    public async Task AWrongKey_ANoKey_AnUnknownBatch_AndNoServer_EachExitOneWithOneClearLine()
    {
        await using var server = await RunningServer.StartAsync();
        var noKey = new Dictionary<string, string?> { ["SHEPHERD_API_KEY"] = null, ["SHEPHERD_URL"] = null };

        var wrongKey = await RunRawAsync(["list", "--server", server.BaseUrl.ToString(), "--api-key", "sk-wrong"], noKey);
        var missingKey = await RunRawAsync(["list", "--server", server.BaseUrl.ToString()], noKey);
        var unknown = await RunAsync(server, "status", "batch_000000000000000000000000");
        var unreachable = await RunRawAsync(["status", "batch_x", "--server", "http://127.0.0.1:1", "--api-key", "k"], noKey);

        Assert.True(wrongKey.ExitCode == 1, wrongKey.ToString());
        Assert.Contains("refused the API key (401 Unauthorized)", OneLine(wrongKey), StringComparison.Ordinal);
        Assert.DoesNotContain("sk-wrong", wrongKey.Stderr, StringComparison.Ordinal);
        Assert.True(missingKey.ExitCode == 1, missingKey.ToString());
        Assert.Contains("requires an API key", OneLine(missingKey), StringComparison.Ordinal);
        Assert.True(unknown.ExitCode == 1, unknown.ToString());
        Assert.Contains("No batch found with id 'batch_000000000000000000000000'", OneLine(unknown), StringComparison.Ordinal);
        Assert.True(unreachable.ExitCode == 1, unreachable.ToString());
        Assert.Contains("cannot reach a Shepherd server at http://127.0.0.1:1", OneLine(unreachable), StringComparison.Ordinal);
    }

    [Fact]
    public async Task WithJson_EachRefusalNamesWhatWentWrong_SoAScriptCanTellThemApart()
    {
        await using var server = await RunningServer.StartAsync();
        var noKey = new Dictionary<string, string?> { ["SHEPHERD_API_KEY"] = null, ["SHEPHERD_URL"] = null };

        var wrongKey = await RunRawAsync(["list", "--json", "--server", server.BaseUrl.ToString(), "--api-key", "sk-wrong"], noKey);
        var unknown = await RunAsync(server, "status", "batch_000000000000000000000000", "--json");
        var unreachable = await RunRawAsync(["status", "batch_x", "--json", "--server", "http://127.0.0.1:1", "--api-key", "k"], noKey);

        Assert.Equal(
            ["unauthorized", "not_found", "unreachable"],
            new[] { wrongKey, unknown, unreachable }.Select(r => SingleDocument(r).GetProperty("error").GetString()));
    }

    [Fact]
    public async Task WithoutFlags_TheServerAndKeyComeFromShepherdUrlAndShepherdApiKey()
    {
        await using var server = await RunningServer.StartAsync();
        var input = await WriteBatchAsync("env.jsonl", 3);
        // An OpenAI SDK's base url (ending in /v1) works too.
        var environment = new Dictionary<string, string?>
        {
            ["SHEPHERD_URL"] = new Uri(server.BaseUrl, "v1").ToString(),
            ["SHEPHERD_API_KEY"] = RunningServer.Key,
        };

        var submitted = await RunRawAsync(["submit", input, "--wait", "--json", "--poll-interval", Poll], environment);
        var listed = await RunRawAsync(["list", "--json"], environment);
        var flagWins = await RunRawAsync(["list", "--api-key", RunningServer.OtherKey], environment);

        Assert.True(submitted.ExitCode == 0, submitted.ToString());
        var id = SingleDocument(submitted).GetProperty("id").GetString();
        Assert.True(listed.ExitCode == 0, listed.ToString());
        Assert.Equal(id, SingleDocument(listed).EnumerateArray().Single().GetProperty("id").GetString());
        // --api-key beats the variable: the other tenant sees none of the first one's batches.
        Assert.True(flagWins.ExitCode == 0, flagWins.ToString());
        Assert.Contains("No batches.", flagWins.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task InvalidFlagsAndInput_ExitTwo_BeforeAnythingIsSent()
    {
        var input = await WriteBatchAsync("flags.jsonl", 1);
        var empty = _folder.File("empty.jsonl");
        await File.WriteAllTextAsync(empty, "", Ct);
        var unreachable = new Dictionary<string, string?> { ["SHEPHERD_URL"] = "http://127.0.0.1:1" };
        string[][] cases =
        [
            ["list", "--limit", "0"],
            ["list", "--server", "not-a-url"],
            ["status"],
            ["wait", "batch_x", "--timeout", "soon"],
            ["submit", _folder.File("missing.jsonl")],
            ["submit", input, "--metadata", "novalue"],
            ["submit", input, "--completion-window", "1y"],
            ["submit", input, "--timeout", "1m"],
            ["submit", empty],
        ];

        foreach (var args in cases)
        {
            var run = await RunRawAsync(args, unreachable);
            Assert.True(run.ExitCode == 2, $"shepherd {string.Join(' ', args)}: {run}");
            Assert.NotEqual("", run.Stderr.Trim());
            Assert.DoesNotContain("   at ", run.Stderr, StringComparison.Ordinal);
        }

        var badUrl = await RunRawAsync(["list"], new Dictionary<string, string?> { ["SHEPHERD_URL"] = "ftp://example" });
        Assert.True(badUrl.ExitCode == 2, badUrl.ToString());
        Assert.Contains("$SHEPHERD_URL must be an absolute http or https url", badUrl.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Retry_MakesANewBatchOfTheFailedRequests_AndWithWaitExitsZeroOnceTheyAllSucceed()
    {
        await using var healthy = await Simulators.StartHttpAsync();
        // Prompts over 200 tokens are answered 400 by the first provider.
        var first = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(2), ContextTokens = 200 });
        string id;
        RunningServer restarted;
        try
        {
            var submitted = await RunAsync(first, "submit", await WriteBatchAsync("mixed.jsonl", 10, longPrompt: 3), "--wait", "--json", "--poll-interval", Poll);
            Assert.True(submitted.ExitCode == 3, submitted.ToString());
            id = SingleDocument(submitted).GetProperty("id").GetString()!;
        }
        finally
        {
            // The same server, now sending to a provider whose context takes the long prompt.
            restarted = await first.RestartAsync(upstream: u => u.BaseUrl = new Uri(healthy.BaseUrl, "v1"));
        }

        await using (restarted)
        {
            var retry = await RunAsync(restarted, "retry", id);
            var waited = await RunAsync(restarted, "retry", id, "--wait", "--poll-interval", Poll);

            Assert.True(retry.ExitCode == 0, retry.ToString());
            var started = Assert.Single(retry.Stdout.Split('\n'), line => line.StartsWith("Retrying", StringComparison.Ordinal));
            var match = System.Text.RegularExpressions.Regex.Match(started, $@"^Retrying 1 failed or expired requests of {id} as (batch_\w+) \((validating|in_progress|completed)\)\.$");
            Assert.True(match.Success, retry.ToString());
            var retryId = match.Groups[1].Value;
            Assert.Contains($"shepherd wait {retryId}", retry.Stdout, StringComparison.Ordinal);
            // Asked again, the server hands back the same retry, and --wait follows it to its end.
            Assert.True(waited.ExitCode == 0, waited.ToString());
            Assert.Contains($"of {id} as {retryId} (", waited.Stdout, StringComparison.Ordinal);
            Assert.Contains($"{retryId} completed: 1 succeeded, 0 failed of 1", waited.Stdout, StringComparison.Ordinal);
            Assert.Equal(1, healthy.Provider.ExecutedCounts().Values.Sum());
        }
    }

    [Fact]
    public async Task Retry_OfABatchWithoutFailures_SaysThereIsNothingToRetry_AndExitsZero()
    {
        await using var server = await RunningServer.StartAsync();
        var submitted = await RunAsync(server, "submit", await WriteBatchAsync("fine.jsonl", 3), "--wait", "--json", "--poll-interval", Poll);
        Assert.True(submitted.ExitCode == 0, submitted.ToString());
        var id = SingleDocument(submitted).GetProperty("id").GetString()!;

        var retry = await RunAsync(server, "retry", id, "--wait", "--poll-interval", Poll);

        Assert.True(retry.ExitCode == 0, retry.ToString());
        Assert.Contains($"{id} has no failed or expired request: nothing to retry.", retry.Stderr, StringComparison.Ordinal);
        Assert.Single((await server.GetAsync("/v1/batches")).Body.GetProperty("data").EnumerateArray());
        var json = SingleDocument(await RunAsync(server, "retry", id, "--json"));
        Assert.Equal((JsonValueKind.Null, id, 0), (json.GetProperty("id").ValueKind, json.GetProperty("retry_of").GetString(), json.GetProperty("retried").GetInt32()));
    }

    [Fact]
    public async Task SubmitWithABudget_CreatesABatchThatKeepsIt()
    {
        await using var server = await RunningServer.StartAsync();

        var submitted = await RunAsync(server, "submit", await WriteBatchAsync("budgeted.jsonl", 3), "--budget", "0.002", "--json");

        Assert.True(submitted.ExitCode == 0, submitted.ToString());
        var (status, batch) = await server.GetAsync($"/v1/batches/{SingleDocument(submitted).GetProperty("id").GetString()}");
        Assert.Equal(200, status);
        Assert.Equal(0.002m, batch.GetProperty("budget_usd").GetDecimal());
        var shown = SingleDocument(await RunAsync(server, "status", batch.GetProperty("id").GetString()!, "--json"));
        Assert.Equal((0.002m, 0), (shown.GetProperty("budget_usd").GetDecimal(), shown.GetProperty("budget_exceeded_requests").GetInt32()));
    }

    [Fact]
    public async Task StatusAndWait_SayHowManyAnswersTheServersCacheGave_AndWhatTheySaved()
    {
        await using var server = await RunningServer.StartAsync(tune: o => o.AnswerCache = new Server.ServerCacheOptions());
        var input = await WriteBatchAsync("again.jsonl", 3);
        var first = await RunAsync(server, "submit", input, "--wait", "--json", "--poll-interval", Poll);
        Assert.True(first.ExitCode == 0, first.ToString());
        await server.WaitForKeptAnswersAsync(3);

        var second = await RunAsync(server, "submit", input, "--wait", "--poll-interval", Poll);
        var id = Regex.Match(second.Stdout, @"(batch_\w+) completed: ").Groups[1].Value;
        var status = await RunAsync(server, "status", id);
        var json = await RunAsync(server, "status", id, "--json");

        var paid = SingleDocument(first).GetProperty("cost_usd").GetDecimal();
        var line = $"3 answers not sent for again ({Engine.Pricing.Cost.Describe(paid)} not paid again)";
        Assert.True(second.ExitCode == 0, second.ToString());
        Assert.Contains($"  cached:  {line}", second.Stdout, StringComparison.Ordinal);
        Assert.True(status.ExitCode == 0, status.ToString());
        Assert.Matches($@"cached\s+{Regex.Escape(line)}", status.Stdout);
        var shown = SingleDocument(json);
        Assert.Equal((3L, paid), (shown.GetProperty("cached").GetInt64(), shown.GetProperty("cache_saved_usd").GetDecimal()));
        Assert.Equal(0, SingleDocument(first).GetProperty("cached").GetInt64());
    }

    [Fact]
    public async Task StatusAndWait_NameALaneWhoseKeyIsRefused_AndJsonListsTheLanes()
    {
        // The server presents its own upstream key; this provider takes another.
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { ApiKey = "sk-not-the-servers" });
        var submitted = await RunAsync(server, "submit", await WriteBatchAsync("refused.jsonl", 5), "--json");
        Assert.True(submitted.ExitCode == 0, submitted.ToString());
        var id = SingleDocument(submitted).GetProperty("id").GetString()!;
        await server.WaitForAsync($"/v1/batches/{id}", b => b.GetProperty("lanes").EnumerateArray().Any(l => l.GetProperty("state").GetString() == "key_refused"));

        var status = await RunRawAsync(["status", id, "--server", server.BaseUrl.ToString(), "--api-key", RunningServer.Key], new Dictionary<string, string?> { ["COLUMNS"] = "400" });
        var json = await RunAsync(server, "status", id, "--json");
        var waited = await RunAsync(server, "wait", id, "--timeout", "1s", "--poll-interval", Poll, "--progress", "plain");

        Assert.True(status.ExitCode == 0, status.ToString());
        var row = Assert.Single(status.Stdout.Split('\n'), line => line.StartsWith("lanes", StringComparison.Ordinal));
        Assert.Contains("sim refuses the key for gpt-4o-mini (HTTP 401: Incorrect API key provided", row, StringComparison.Ordinal);
        Assert.Contains("next probe in", row, StringComparison.Ordinal);
        Assert.True(json.ExitCode == 0, json.ToString());
        var lane = Assert.Single(SingleDocument(json).GetProperty("lanes").EnumerateArray());
        Assert.Equal(("sim", "gpt-4o-mini", "key_refused"), (lane.GetProperty("upstream").GetString(), lane.GetProperty("model").GetString(), lane.GetProperty("state").GetString()));
        Assert.StartsWith("HTTP 401: ", lane.GetProperty("reason").GetString(), StringComparison.Ordinal);
        Assert.Equal(JsonValueKind.String, lane.GetProperty("since").ValueKind);
        Assert.Equal(JsonValueKind.String, lane.GetProperty("next_probe_at").ValueKind);
        // The wait's last progress line, drawn as it gives up, says why nothing moves.
        Assert.True(waited.ExitCode == 4, waited.ToString());
        Assert.Contains("sim refuses the key for gpt-4o-mini (HTTP 401", waited.Stdout.Split('\n').Last(l => l.StartsWith('[')), StringComparison.Ordinal);
    }

    [Fact]
    public async Task SubmitOfAnthropicLines_WithoutAnEndpoint_GoesToMessages_AndSucceeds()
    {
        await using var server = await RunningServer.StartAsync();
        var input = BatchFiles.Write(_folder.File("docs.jsonl"), BatchFiles.Anthropic(4));

        var submitted = await RunAsync(server, "submit", input, "--wait", "--json", "--poll-interval", Poll);

        Assert.True(submitted.ExitCode == 0, submitted.ToString());
        var batch = SingleDocument(submitted);
        Assert.Equal("/v1/messages", batch.GetProperty("endpoint").GetString());
        Assert.Equal((4, 4), (batch.GetProperty("total").GetInt64(), batch.GetProperty("succeeded").GetInt64()));
    }

    [Fact]
    public async Task RemoteCommands_SeeABatchCreatedThroughTheAnthropicDoor()
    {
        await using var server = await RunningServer.StartAsync(
            new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(100) }, upstream: u => u.Limits.MaxConcurrency = 2);
        var done = await CreateMessageBatchAsync(server, 3);

        var waited = await RunAsync(server, "wait", done, "--json", "--poll-interval", Poll);
        var status = await RunAsync(server, "status", done);
        var results = await RunAsync(server, "results", done);
        var running = await CreateMessageBatchAsync(server, 1000);
        var list = await RunAsync(server, "list", "--json");
        var cancel = await RunAsync(server, "cancel", running);

        Assert.True(waited.ExitCode == 0, waited.ToString());
        var ended = SingleDocument(waited);
        Assert.Equal((done, "completed", 3L), (ended.GetProperty("id").GetString(), ended.GetProperty("status").GetString(), ended.GetProperty("succeeded").GetInt64()));
        Assert.True(status.ExitCode == 0, status.ToString());
        Assert.Contains(done, status.Stdout, StringComparison.Ordinal);
        Assert.True(results.ExitCode == 0, results.ToString());
        var lines = results.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(Parse).ToList();
        Assert.Equal(["doc-00001", "doc-00002", "doc-00003"], lines.Select(CustomId));
        Assert.All(lines, line => Assert.Equal("succeeded", line.GetProperty("result").GetProperty("type").GetString()));
        Assert.True(list.ExitCode == 0, list.ToString());
        Assert.Equal([running, done], SingleDocument(list).EnumerateArray().Select(b => b.GetProperty("id").GetString()));
        Assert.True(cancel.ExitCode == 0, cancel.ToString());
        Assert.Matches($"{running} (cancelling|cancelled): ", cancel.Stdout);
        // The other tenant still sees neither.
        var (otherStatus, _) = await RunningServer.SendAsync(server.Client(RunningServer.OtherKey), HttpMethod.Get, $"/v1/batches/{done}");
        Assert.Equal(404, otherStatus);
    }

    /// <summary>Creates a batch of <paramref name="count"/> requests through the Anthropic door and returns its id.</summary>
    private static async Task<string> CreateMessageBatchAsync(RunningServer server, int count)
    {
        var body = $"{{\"requests\":[{string.Join(',', BatchFiles.Anthropic(count).Select(r => r.Line))}]}}";
        var (status, batch) = await server.PostAsync("/v1/messages/batches", body);
        Assert.Equal(200, status);
        var id = batch.GetProperty("id").GetString()!;
        Assert.StartsWith("msgbatch_", id, StringComparison.Ordinal);
        return id;
    }

    /// <summary>Runs <c>shepherd ARGS --server URL --api-key KEY</c> against <paramref name="server"/>.</summary>
    private Task<ProcessResult> RunAsync(RunningServer server, params string[] args) =>
        RunRawAsync([.. args, "--server", server.BaseUrl.ToString(), "--api-key", RunningServer.Key]);

    private async Task<ProcessResult> RunRawAsync(string[] args, IReadOnlyDictionary<string, string?>? environment = null)
    {
        using var process = ShepherdProcess.Start(_folder.Path, args, environment);
        return await process.WaitAsync();
    }

    /// <summary>A batch file of <paramref name="count"/> chat requests r0…; the one at <paramref name="longPrompt"/> has a prompt of thousands of tokens.</summary>
    private async Task<string> WriteBatchAsync(string name, int count, int longPrompt = -1)
    {
        var path = _folder.File(name);
        var text = new StringBuilder();
        for (var i = 0; i < count; i++)
        {
            text.Append(Line(i, i == longPrompt ? string.Concat(Enumerable.Repeat("a long prompt ", 2000)) : $"question {i}")).Append('\n');
        }

        await File.WriteAllTextAsync(path, text.ToString(), Ct);
        return path;
    }

    private static string Line(int i, string? prompt = null) => JsonSerializer.Serialize(new
    {
        custom_id = $"r{i}",
        method = "POST",
        url = "/v1/chat/completions",
        body = new { model = "gpt-4o-mini", messages = new[] { new { role = "user", content = prompt ?? $"question {i}" } } },
    });

    /// <summary>Stdout as the single JSON document <c>--json</c> promises.</summary>
    private static JsonElement SingleDocument(ProcessResult run)
    {
        Assert.True(run.Stdout.Trim().Split('\n').Length == 1, "stdout is not one line of JSON: " + run);
        return JsonDocument.Parse(run.Stdout).RootElement.Clone();
    }

    /// <summary>The one stderr line of a failed command; nothing on stdout, no stack trace.</summary>
    private static string OneLine(ProcessResult run)
    {
        Assert.Equal("", run.Stdout);
        var lines = run.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, "not one line on stderr: " + run);
        Assert.StartsWith("shepherd: ", lines[0], StringComparison.Ordinal);
        return lines[0];
    }

    private static JsonElement Parse(string line) => JsonDocument.Parse(line).RootElement.Clone();

    private static string CustomId(JsonElement line) => line.GetProperty("custom_id").GetString()!;
}
