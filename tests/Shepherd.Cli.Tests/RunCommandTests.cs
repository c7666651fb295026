using System.Text.Json;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Cli.Tests;

public sealed class RunCommandTests : IDisposable
{
    private readonly TempDirectory _folder = new();

    public void Dispose() => _folder.Dispose();

    private static string[] Run(string input, SimulatorServer server, params string[] more) =>
        ["run", input, "--provider", "openai", "--base-url", new Uri(server.BaseUrl, "v1").ToString(), "--api-key", "test-key", "--progress", "none", .. more];

    private static List<string> CustomIds(string path) => [.. BatchFiles.ReadJsonl(path).Select(line => line.GetProperty("custom_id").GetString()!)];

    [Fact]
    public async Task AFile_RunsThroughAFaultyProvider_AndEveryCustomIdGetsOneAnswer()
    {
        var requests = BatchFiles.OpenAIChat(200);
        var input = BatchFiles.Write(_folder.File("reviews.jsonl"), requests);
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { Error500Rate = 0.05, Error503Rate = 0.05, ResetRate = 0.03 }, seed: 4);

        var result = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server, "--concurrency", "8", "--max-attempts", "20"));

        Assert.True(result.ExitCode == 0, result.ToString());
        var output = BatchFiles.ReadJsonl(_folder.File("reviews.out.jsonl"));
        Assert.Equal(requests.Select(r => r.CustomId), output.Select(l => l.GetProperty("custom_id").GetString()));
        Assert.All(output, line =>
        {
            Assert.StartsWith("batch_req_", line.GetProperty("id").GetString(), StringComparison.Ordinal);
            Assert.Equal(200, line.GetProperty("response").GetProperty("status_code").GetInt32());
            Assert.Equal("chat.completion", line.GetProperty("response").GetProperty("body").GetProperty("object").GetString());
            Assert.Equal(JsonValueKind.Null, line.GetProperty("error").ValueKind);
        });
        Assert.Empty(File.ReadAllText(_folder.File("reviews.errors.jsonl")));
        Assert.True(File.Exists(input + ".shepherd.db"));
        Assert.InRange(server.Provider.Stats().PeakInFlight, 1, 8);
        Assert.Contains("200 succeeded, 0 failed of 200", result.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task FailedRequests_GoToTheErrorsFile_WithTheProvidersStatusAndBody()
    {
        var requests = BatchFiles.OpenAIChat(100);
        var input = BatchFiles.Write(_folder.File("in.jsonl"), requests);
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { Error500Rate = 0.3 }, seed: 8);

        var result = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server, "--max-attempts", "1"));

        Assert.True(result.ExitCode == 3, result.ToString());
        var errors = BatchFiles.ReadJsonl(_folder.File("in.errors.jsonl"));
        Assert.NotEmpty(errors);
        Assert.All(errors, line =>
        {
            Assert.Equal(500, line.GetProperty("response").GetProperty("status_code").GetInt32());
            Assert.Equal("api_error", line.GetProperty("response").GetProperty("body").GetProperty("error").GetProperty("type").GetString());
        });
        var all = CustomIds(_folder.File("in.out.jsonl")).Concat(CustomIds(_folder.File("in.errors.jsonl"))).Order().ToList();
        Assert.Equal(requests.Select(r => r.CustomId).Order(), all);
        Assert.Equal(server.Provider.Stats().ByStatus[500], errors.Count);
    }

    [Fact]
    public async Task AnthropicInput_GoesToAnAnthropicProvider_AndGetsAnthropicResultLines()
    {
        var requests = BatchFiles.Anthropic(30);
        var input = BatchFiles.Write(_folder.File("docs.jsonl"), requests);
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { ApiKey = "ant-key" });

        var result = await ShepherdProcess.RunAsync(_folder.Path,
            "run", input, "--base-url", server.BaseUrl.ToString(), "--api-key", "ant-key", "--progress", "none");

        Assert.True(result.ExitCode == 0, result.ToString());
        var output = BatchFiles.ReadJsonl(_folder.File("docs.out.jsonl"));
        Assert.Equal(requests.Select(r => r.CustomId), output.Select(l => l.GetProperty("custom_id").GetString()));
        Assert.All(output, line =>
        {
            Assert.Equal("succeeded", line.GetProperty("result").GetProperty("type").GetString());
            Assert.Equal("message", line.GetProperty("result").GetProperty("message").GetProperty("type").GetString());
        });
    }

    [Fact]
    public async Task BadInput_IsReportedByLine_AndNothingIsSentOrLeftBehind()
    {
        var good = BatchFiles.OpenAIChat(3);
        var input = BatchFiles.WriteLines(_folder.File("bad.jsonl"), [good[0].Line, "{oops", good[1].Line, good[0].Line, good[2].Line.Replace("/v1/chat/completions", "/v1/embeddings", StringComparison.Ordinal)]);
        await using var server = await Simulators.StartHttpAsync();

        var result = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server));

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains("bad.jsonl:line 2: not valid JSON", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("bad.jsonl:line 4: custom_id \"req-00001\" is already used on line 1 (duplicate_custom_id)", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("bad.jsonl:line 5: url /v1/embeddings differs from /v1/chat/completions", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("nothing was sent", result.Stderr, StringComparison.Ordinal);
        Assert.Equal(0, server.Provider.Stats().Requests);
        Assert.Equal(["bad.jsonl"], Directory.GetFiles(_folder.Path).Select(Path.GetFileName));
    }

    [Fact]
    public async Task RefusedInput_WithJson_PrintsAnErrorDocument_AndSaysHowManyProblemsWereNotListed()
    {
        var input = BatchFiles.WriteLines(_folder.File("bad.jsonl"), [.. Enumerable.Range(0, 130).Select(_ => "{oops")]);
        await using var server = await Simulators.StartHttpAsync();

        var result = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server, "--json"));

        Assert.True(result.ExitCode == 2, result.ToString());
        var document = JsonDocument.Parse(result.Stdout).RootElement;
        Assert.Equal(("error", "invalid_input", 2), (document.GetProperty("status").GetString(), document.GetProperty("error").GetString(), document.GetProperty("exit_code").GetInt32()));
        Assert.Equal(Enumerable.Range(1, 100).Select(n => (long)n), document.GetProperty("problems").EnumerateArray().Select(p => p.GetProperty("line").GetInt64()));
        Assert.Equal(30, document.GetProperty("more_problems").GetInt64());
        Assert.Contains("bad.jsonl was not accepted; nothing was sent. 130 problems:", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("and 30 more problems on later lines, not listed.", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AnInputWithoutRequests_IsNamedApartFromTheMessage()
    {
        var input = BatchFiles.WriteLines(_folder.File("blank.jsonl"), ["", "  "]);
        await using var server = await Simulators.StartHttpAsync();

        var result = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server));

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains("blank.jsonl was not accepted; nothing was sent. 1 problem:", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("  blank.jsonl: the input holds no request (empty_file)", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AStateFileInUse_ExitsAsBusy_NotAsInvalidInput()
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(3));
        await using var server = await Simulators.StartHttpAsync();
        using var held = new FileStream(input + ".shepherd.db.lock", FileMode.Create, FileAccess.ReadWrite, FileShare.None);

        var result = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server, "--json"));

        Assert.True(result.ExitCode == 7, result.ToString());
        Assert.StartsWith("Another shepherd process is using the state file in.jsonl.shepherd.db.", result.Stderr, StringComparison.Ordinal);
        Assert.Equal("busy", JsonDocument.Parse(result.Stdout).RootElement.GetProperty("error").GetString());
        Assert.Equal(0, server.Provider.Stats().Requests);
    }

    [Fact]
    public async Task ACustomIdWithQuotesAndBrackets_IsWrittenAsGiven_NotAsEscapes()
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(2, idPrefix: "it's <b>&\\\"q\\\"-"));
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { Error500Rate = 0.5 }, seed: 3);

        var result = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server, "--max-attempts", "1"));

        var written = File.ReadAllText(_folder.File("in.out.jsonl")) + File.ReadAllText(_folder.File("in.errors.jsonl"));
        Assert.True(result.ExitCode is 0 or 3, result.ToString());
        Assert.Contains("\"custom_id\":\"it's <b>&\\\"q\\\"-", written, StringComparison.Ordinal);
        Assert.DoesNotContain("\\u00", written, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AfterTheEnd_RunningAgainSendsNothing_AndRewritesTheSameFiles()
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(50));
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { Error503Rate = 0.1 });
        var first = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server, "--max-attempts", "1"));
        var sent = server.Provider.Stats().Requests;
        var output = File.ReadAllBytes(_folder.File("in.out.jsonl"));
        var errors = File.ReadAllBytes(_folder.File("in.errors.jsonl"));
        File.Delete(_folder.File("in.out.jsonl"));

        var second = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server, "--max-attempts", "1"));

        Assert.Equal(first.ExitCode, second.ExitCode);
        Assert.Contains("already completed: nothing to send", second.Stderr, StringComparison.Ordinal);
        Assert.Equal(sent, server.Provider.Stats().Requests);
        Assert.Equal(output, File.ReadAllBytes(_folder.File("in.out.jsonl")));
        Assert.Equal(errors, File.ReadAllBytes(_folder.File("in.errors.jsonl")));
    }

    [Fact]
    public async Task AnEditedInput_SendsOnlyWhatChanged_KeepsTheRest_AndFreshSendsEverything()
    {
        var original = BatchFiles.OpenAIChat(20, i => $"Label review {i}: arrived late, works well.", "gpt-4.1-mini", 20, "r-");
        var input = BatchFiles.Write(_folder.File("in.jsonl"), original);
        await using var server = await Simulators.StartHttpAsync();
        Assert.Equal(0, (await ShepherdProcess.RunAsync(_folder.Path, Run(input, server))).ExitCode);
        var before = server.Provider.Stats().Requests;
        // Two prompts fixed, one request removed, one added.
        var fixes = BatchFiles.OpenAIChat(20, i => $"Label review {i}: arrived on time, works well.", "gpt-4.1-mini", 20, "r-");
        List<TestRequest> edited = [.. original.Select((r, i) => i is 3 or 7 ? fixes[i] : r).Where((_, i) => i != 12), .. BatchFiles.OpenAIChat(1, _ => "Label review new.", "gpt-4.1-mini", 20, "r-new-")];
        BatchFiles.Write(input, edited);

        var again = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server, "--json"));

        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.Equal(3, server.Provider.Stats().Requests - before);
        var summary = JsonDocument.Parse(again.Stdout).RootElement;
        var kept = summary.GetProperty("edited");
        Assert.Equal((17L, 3L, 1L), (kept.GetProperty("reused").GetInt64(), kept.GetProperty("sent").GetInt64(), kept.GetProperty("dropped").GetInt64()));
        Assert.Equal((20L, 17L), (summary.GetProperty("succeeded").GetInt64(), summary.GetProperty("cached").GetInt64()));
        Assert.True(summary.GetProperty("cache_saved_usd").GetDecimal() > 0);
        Assert.Contains("17 unchanged answers kept", again.Stderr, StringComparison.Ordinal);
        var lines = BatchFiles.ReadJsonl(_folder.File("in.out.jsonl")).ToDictionary(l => l.GetProperty("custom_id").GetString()!);
        Assert.Equal(edited.Select(r => r.CustomId).Order(), lines.Keys.Order());
        var sent = new[] { edited[3].CustomId, edited[7].CustomId, edited[^1].CustomId };
        Assert.All(lines, line => Assert.Equal(!sent.Contains(line.Key), line.Value.TryGetProperty("cached", out var cached) && cached.GetBoolean()));

        // Started over, the answer cache of the runs still has every answer; without it, everything is sent.
        var fresh = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server, "--fresh", "--json"));
        Assert.True(fresh.ExitCode == 0, fresh.ToString());
        Assert.Equal(3, server.Provider.Stats().Requests - before);
        Assert.Equal(20L, JsonDocument.Parse(fresh.Stdout).RootElement.GetProperty("cached").GetInt64());
        var uncached = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server, "--fresh", "--no-cache"));
        Assert.True(uncached.ExitCode == 0, uncached.ToString());
        Assert.Equal(3 + 20, server.Provider.Stats().Requests - before);
        Assert.DoesNotContain("\"cached\"", File.ReadAllText(_folder.File("in.out.jsonl")), StringComparison.Ordinal);
    }

    [Fact]
    public async Task NoCacheSampled_SendsWhatAsksForSampling_AndReplaysTheRest()
    {
        var input = _folder.File("in.jsonl");
        File.WriteAllLines(input, Enumerable.Range(0, 6).Select(i =>
            $$$"""{"custom_id":"r{{{i}}}","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4.1-mini","temperature":{{{(i % 2 == 0 ? "0.8" : "0")}}},"messages":[{"role":"user","content":"Slogan {{{i}}}"}]}}"""));
        await using var server = await Simulators.StartHttpAsync();
        Assert.Equal(0, (await ShepherdProcess.RunAsync(_folder.Path, Run(input, server))).ExitCode);

        var unsampled = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server, "--fresh", "--no-cache-sampled", "--json"));
        var replayed = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server, "--fresh", "--json"));

        Assert.True(unsampled.ExitCode == 0, unsampled.ToString());
        Assert.Equal(3L, JsonDocument.Parse(unsampled.Stdout).RootElement.GetProperty("cached").GetInt64());
        Assert.Equal(6L, JsonDocument.Parse(replayed.Stdout).RootElement.GetProperty("cached").GetInt64());
        Assert.Equal(6 + 3, server.Provider.Stats().Requests);
    }

    [Fact]
    public async Task TheCacheCommand_SaysWhatTheRunsKept_AndClearsIt()
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(12));
        await using var server = await Simulators.StartHttpAsync();
        Assert.Equal(0, (await ShepherdProcess.RunAsync(_folder.Path, Run(input, server))).ExitCode);

        var stats = await ShepherdProcess.RunAsync(_folder.Path, "cache", "stats");
        var pruned = await ShepherdProcess.RunAsync(_folder.Path, "cache", "prune");
        var cleared = await ShepherdProcess.RunAsync(_folder.Path, "cache", "clear");
        var empty = await ShepherdProcess.RunAsync(_folder.Path, "cache", "stats");
        var elsewhere = await ShepherdProcess.RunAsync(_folder.Path, "cache", "stats", "--cache", _folder.File("other.db"));

        Assert.True(stats.ExitCode == 0, stats.ToString());
        Assert.Contains(Path.Combine(".cache", "shepherd", "answers.db") + ": 12 answers", stats.Stdout, StringComparison.Ordinal);
        Assert.Contains(": 0 answers removed", pruned.Stdout, StringComparison.Ordinal);
        Assert.Contains(": 12 answers removed", cleared.Stdout, StringComparison.Ordinal);
        Assert.Contains(": 0 answers,", empty.Stdout, StringComparison.Ordinal);
        Assert.Contains("other.db: 0 answers,", elsewhere.Stdout, StringComparison.Ordinal);
        Assert.Equal(12, server.Provider.Stats().Requests);
    }

    [Fact]
    public async Task TheCacheCommand_SaysInOneLineWhatIsWrong_WithAFileThatIsNoCache_OrAServerWithoutOne()
    {
        var notACache = _folder.File("notes.txt");
        await File.WriteAllTextAsync(notACache, "these are notes, not a cache; they are long enough to be read as a header", TestContext.Current.CancellationToken);
        var config = _folder.File("shepherd.json");
        await File.WriteAllTextAsync(config, """{ "server": { "urls": ["http://127.0.0.1:0"] } }""", TestContext.Current.CancellationToken);

        var broken = await ShepherdProcess.RunAsync(_folder.Path, "cache", "stats", "--cache", notACache);
        var none = await ShepherdProcess.RunAsync(_folder.Path, "cache", "prune", "--config", config);
        var both = await ShepherdProcess.RunAsync(_folder.Path, "cache", "clear", "--config", config, "--cache", notACache);

        Assert.Equal((1, 2, 2), (broken.ExitCode, none.ExitCode, both.ExitCode));
        Assert.Equal($"shepherd: {notACache} cannot be used: SQLite Error 26: 'file is not a database'.", broken.Stderr.Trim());
        Assert.Contains("the server keeps no answer cache", none.Stderr, StringComparison.Ordinal);
        Assert.Contains("give one of them", both.Stderr, StringComparison.Ordinal);
        Assert.Equal("these are notes, not a cache; they are long enough to be read as a header", await File.ReadAllTextAsync(notACache, TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task AnImportCutShortByACrash_IsReadAgain()
    {
        var requests = BatchFiles.OpenAIChat(20);
        var input = BatchFiles.Write(_folder.File("in.jsonl"), requests);
        await using (var store = new Engine.Storage.SqliteBatchStore(new Engine.Storage.SqliteStoreOptions { Path = input + ".shepherd.db" }, TimeProvider.System))
        {
            await store.InitializeAsync(TestContext.Current.CancellationToken);
            await store.CreateBatchAsync(new Engine.Model.NewBatch("batch_cut", input), TestContext.Current.CancellationToken);
            await store.AddItemsAsync("batch_cut", [new Engine.Model.ImportItem(1, requests[0].CustomId, "m", "{}"u8.ToArray())], TestContext.Current.CancellationToken);
        }

        await using var server = await Simulators.StartHttpAsync();
        var result = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server));

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(requests.Select(r => r.CustomId), CustomIds(_folder.File("in.out.jsonl")));
        Assert.Equal(20, server.Provider.Stats().Requests);
    }

    [Fact]
    public async Task OutputFiles_GoWhereTheyAreTold()
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(3));
        await using var server = await Simulators.StartHttpAsync();
        Directory.CreateDirectory(_folder.File("out"));

        var result = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server,
            "-o", "out/ok.jsonl", "--errors", "out/bad.jsonl", "--state", "out/state.db", "--json"));

        Assert.True(result.ExitCode == 0, result.ToString());
        var summary = JsonDocument.Parse(result.Stdout).RootElement;
        Assert.Equal((3, 3, 0), (summary.GetProperty("total").GetInt32(), summary.GetProperty("succeeded").GetInt32(), summary.GetProperty("failed").GetInt32()));
        Assert.True(summary.GetProperty("peak_working_set_bytes").GetInt64() > 0);
        Assert.True(summary.GetProperty("cpu_seconds").GetDouble() > 0);
        Assert.True(summary.GetProperty("import_seconds").GetDouble() > 0);
        Assert.True(summary.GetProperty("export_seconds").GetDouble() > 0);
        Assert.Equal(_folder.File("out/ok.jsonl"), summary.GetProperty("output").GetString());
        Assert.Equal(3, CustomIds(_folder.File("out/ok.jsonl")).Count);
        Assert.True(File.Exists(_folder.File("out/bad.jsonl")));
        Assert.True(File.Exists(_folder.File("out/state.db")));
        Assert.False(File.Exists(input + ".shepherd.db"));

        // Run again: the stored batch is found, nothing is imported, the files are written again.
        var again = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server,
            "--output", "out/ok.jsonl", "--errors", "out/bad.jsonl", "--state", "out/state.db", "--json"));

        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.Equal(0, JsonDocument.Parse(again.Stdout).RootElement.GetProperty("import_seconds").GetDouble());
        Assert.Equal(3, CustomIds(_folder.File("out/ok.jsonl")).Count);
    }

    [Fact]
    public async Task TheBuiltInSimulator_RunsTheDemoWithoutANetwork()
    {
        var input = BatchFiles.Write(_folder.File("demo.jsonl"), BatchFiles.OpenAIChat(40));

        var result = await ShepherdProcess.RunAsync(_folder.Path, "run", input, "--provider", "sim", "--sim-latency", "0", "--sim-jitter", "0", "--progress", "plain");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(40, CustomIds(_folder.File("demo.out.jsonl")).Count);
        Assert.Contains("[100.0%] demo.jsonl  40/40 done", result.Stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--concurrency", "0", "--concurrency must be between 1 and 10000; got 0.")]
    [InlineData("--base-url", "ftp://x", "--base-url must be an absolute http or https url")]
    [InlineData("--sim-fail-500", "2", "--sim-fail-500 is a share between 0 and 1")]
    [InlineData("--sim-flex-unavailable", "-0.1", "--sim-flex-unavailable is a share between 0 and 1")]
    [InlineData("--sim-batch-expire", "1.5", "--sim-batch-expire is a share between 0 and 1")]
    [InlineData("--sim-batch-latency", "2", "--sim-batch-latency is a duration with its unit, such as 24h, 90m or 30s; got '2'.")]
    [InlineData("--sim-batch-cancel-latency", "soon", "--sim-batch-cancel-latency is a duration with its unit")]
    [InlineData("--provider", "azure", "--provider is one of sim, openai, anthropic; got 'azure'.")]
    [InlineData("--timeout", "-1", "--timeout is a number of seconds, or a duration with its unit (90s, 10m)")]
    [InlineData("--timeout", "10x", "--timeout is a number of seconds, or a duration with its unit (90s, 10m)")]
    [InlineData("--completion-window", "soon", "--completion-window is a duration with its unit, such as 24h")]
    [InlineData("--completion-window", "24", "--completion-window is a duration with its unit, such as 24h")]
    [InlineData("--max-outage", "0s", "--max-outage must be longer than 0; got '0s'.")]
    [InlineData("--max-outage", "20", "--max-outage is a duration with its unit")]
    [InlineData("--progress", "loud", "--progress is one of auto, live, plain, none; got 'loud'.")]
    [InlineData("--upstream", "http://x/v1@0", "the weight after @ must be a whole number of at least 1")]
    [InlineData("--upstream", "nope", "--upstream must be an absolute http or https url")]
    [InlineData("--priority", "urgent", "--priority is one of low, normal, high; got 'urgent'.")]
    [InlineData("--rpm", "0", "--rpm must be a whole number of at least 1; got 0.")]
    [InlineData("--tpm", "abc", "--tpm must be a whole number of at least 1; got abc.")]
    [InlineData("--concurrency", "many", "--concurrency must be between 1 and 10000; got many.")]
    [InlineData("--state", "in.jsonl", "--state in.jsonl is the input file; the state goes to a file of its own.")]
    [InlineData("--state", "no-such-folder/s.db", "--state: the folder")]
    [InlineData("--state", "postgres://shepherd:pw@db/shepherd", "--state: shepherd run keeps its state in a SQLite file; to share a PostgreSQL store among nodes, run shepherd serve --store postgres://shepherd:***@db/shepherd")]
    public async Task BadFlags_AreRefused_NamingTheFlag(string flag, string value, string message)
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(1));

        var result = await ShepherdProcess.RunAsync(_folder.Path, "run", input, flag, value);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains(message, result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AMissingFile_IsRefused()
    {
        var result = await ShepherdProcess.RunAsync(_folder.Path, "run", "nope.jsonl");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("nope.jsonl", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WithoutAKey_ARealProviderIsRefusedBeforeAnythingIsSent()
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(1));

        var result = await ShepherdProcess.RunAsync(_folder.Path, "run", input, "--provider", "openai");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("No API key for OpenAI: pass --api-key or set OPENAI_API_KEY", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheAnthropicProvider_RefusesAnOpenAIEndpoint()
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(1));

        var result = await ShepherdProcess.RunAsync(_folder.Path, "run", input, "--provider", "anthropic", "--api-key", "k");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("serves /v1/messages", result.Stderr, StringComparison.Ordinal);
    }
}
