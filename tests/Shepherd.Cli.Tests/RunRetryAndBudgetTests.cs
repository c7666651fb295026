using System.Text.Json;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Cli.Tests;

/// <summary>
/// <c>shepherd run --retry-failed</c> sends a saved batch's failures again and keeps its
/// successes; <c>--budget</c> holds a batch to what it may cost.
/// </summary>
public sealed class RunRetryAndBudgetTests : IDisposable
{
    /// <summary>gpt-4.1-mini's prices in US dollars per million tokens, as the built-in price table has them.</summary>
    private const decimal InputPrice = 0.40m;
    private const decimal OutputPrice = 1.60m;

    private readonly TempDirectory _folder = new();

    public void Dispose() => _folder.Dispose();

    private static string[] Run(string input, SimulatorServer server, params string[] more) =>
        ["run", input, "--base-url", new Uri(server.BaseUrl, "v1").ToString(), "--api-key", "k", "--progress", "none", .. more];

    private static List<string> CustomIds(string path) => [.. BatchFiles.ReadJsonl(path).Select(line => line.GetProperty("custom_id").GetString()!)];

    private static JsonElement Summary(ProcessResult result) => JsonDocument.Parse(result.Stdout).RootElement.Clone();

    [Fact]
    public async Task RetryFailed_SendsOnlyWhatFailed_AndKeepsTheSuccessesAndTheirCost()
    {
        var requests = BatchFiles.OpenAIChat(60);
        var input = BatchFiles.Write(_folder.File("in.jsonl"), requests);
        await using (var faulty = await Simulators.StartHttpAsync(new SimulatorOptions { Error500Rate = 0.3 }, seed: 8))
        {
            var first = await ShepherdProcess.RunAsync(_folder.Path, Run(input, faulty, "--max-attempts", "1", "--json"));
            Assert.True(first.ExitCode == 3, first.ToString());
        }

        var failed = CustomIds(_folder.File("in.errors.jsonl"));
        Assert.NotEmpty(failed);
        // Another provider, at another url: the saved batch is found by its input file.
        await using var healthy = await Simulators.StartHttpAsync();

        var retried = await ShepherdProcess.RunAsync(_folder.Path, Run(input, healthy, "--retry-failed", "--json"));

        Assert.True(retried.ExitCode == 0, retried.ToString());
        var summary = Summary(retried);
        Assert.Equal(failed.Count, summary.GetProperty("retried_failed").GetInt64());
        Assert.Equal((60, 60, 0), (summary.GetProperty("total").GetInt32(), summary.GetProperty("succeeded").GetInt32(), summary.GetProperty("failed").GetInt32()));
        Assert.Contains($"Retrying {failed.Count} failed or expired requests", retried.Stderr, StringComparison.Ordinal);
        // Only the failed ones went out again, once each.
        var executed = healthy.Provider.ExecutedCounts();
        Assert.Equal(failed.Count, healthy.Provider.Stats().Requests);
        Assert.Equal(requests.Where(r => failed.Contains(r.CustomId)).Select(r => r.Key).Order(), executed.Keys.Order());
        var output = BatchFiles.ReadJsonl(_folder.File("in.out.jsonl"));
        Assert.Equal(requests.Select(r => r.CustomId), output.Select(l => l.GetProperty("custom_id").GetString()));
        Assert.Empty(File.ReadAllText(_folder.File("in.errors.jsonl")));
        // The cost is that of every answer in the output, the first run's among them, counted once.
        var usages = output.Select(l => l.GetProperty("response").GetProperty("body").GetProperty("usage")).ToList();
        var inputTokens = usages.Sum(u => u.GetProperty("prompt_tokens").GetInt64());
        var outputTokens = usages.Sum(u => u.GetProperty("completion_tokens").GetInt64());
        Assert.Equal(inputTokens, summary.GetProperty("input_tokens").GetInt64());
        Assert.Equal(outputTokens, summary.GetProperty("output_tokens").GetInt64());
        Assert.Equal(((inputTokens * InputPrice) + (outputTokens * OutputPrice)) / 1_000_000m, summary.GetProperty("cost_usd").GetDecimal());
    }

    [Fact]
    public async Task RetryFailed_OfAnthropicInput_SendsThemToAnAnthropicUpstream_AndSaysHowManyInTheSummary()
    {
        var requests = BatchFiles.Anthropic(10);
        var input = BatchFiles.Write(_folder.File("docs.jsonl"), requests);
        await using (var tiny = await Simulators.StartHttpAsync(new SimulatorOptions { ContextTokens = 1 }))
        {
            // Every prompt is over the context: a permanent 400 each.
            var first = await ShepherdProcess.RunAsync(_folder.Path,
                "run", input, "--provider", "anthropic", "--base-url", tiny.BaseUrl.ToString(), "--api-key", "k", "--progress", "none");
            Assert.True(first.ExitCode == 3, first.ToString());
            Assert.Equal(10, tiny.Provider.Stats().ByStatus[400]);
        }

        var errored = BatchFiles.ReadJsonl(_folder.File("docs.errors.jsonl"));
        Assert.Equal(10, errored.Count);
        Assert.All(errored, line => Assert.Equal("errored", line.GetProperty("result").GetProperty("type").GetString()));
        await using var healthy = await Simulators.StartHttpAsync();

        var retried = await ShepherdProcess.RunAsync(_folder.Path,
            "run", input, "--provider", "anthropic", "--base-url", healthy.BaseUrl.ToString(), "--api-key", "k", "--progress", "none", "--retry-failed");

        Assert.True(retried.ExitCode == 0, retried.ToString());
        Assert.Contains("  retried: 10 requests that had failed or expired", retried.Stdout, StringComparison.Ordinal);
        Assert.Contains("10 succeeded, 0 failed of 10", retried.Stdout, StringComparison.Ordinal);
        Assert.Equal(10, healthy.Provider.Stats().ByStatus[200]);
        var output = BatchFiles.ReadJsonl(_folder.File("docs.out.jsonl"));
        Assert.Equal(requests.Select(r => r.CustomId), output.Select(l => l.GetProperty("custom_id").GetString()));
        Assert.All(output, line => Assert.Equal("message", line.GetProperty("result").GetProperty("message").GetProperty("type").GetString()));
        Assert.Empty(File.ReadAllText(_folder.File("docs.errors.jsonl")));
    }

    [Fact]
    public async Task ABudgetThatCoversTheRealCost_CompletesEveryRequest_ThoughTheirWorstCasesDoNotFitTogether()
    {
        const int Count = 20;
        const int MaxTokens = 1000;
        const decimal Budget = 0.01m;
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(Count, maxTokens: MaxTokens));
        await using var server = await Simulators.StartHttpAsync();
        // Each request may cost up to its max_tokens of output: together far more than the budget.
        Assert.True(Count * MaxTokens * OutputPrice / 1_000_000m > 3 * Budget);

        var result = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server, "--budget", "0.01", "--json"));

        Assert.True(result.ExitCode == 0, result.ToString());
        var summary = Summary(result);
        Assert.Equal(Count, summary.GetProperty("succeeded").GetInt32());
        Assert.InRange(summary.GetProperty("cost_usd").GetDecimal(), 0.0001m, Budget);
        Assert.Equal(Count, server.Provider.ExecutedCounts().Count);
    }

    [Fact]
    public async Task ATightBudget_EndsTheRestBudgetExceeded_AndRetryFailedWithABiggerOneFinishesThem()
    {
        var requests = BatchFiles.OpenAIChat(20, maxTokens: 1000);
        var input = BatchFiles.Write(_folder.File("in.jsonl"), requests);
        await using var server = await Simulators.StartHttpAsync();

        // A request may cost up to $0.0016: the first fits $0.002, and after a few answers the rest no longer do.
        var tight = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server, "--budget", "0.002"));

        Assert.True(tight.ExitCode == 3, tight.ToString());
        var answered = CustomIds(_folder.File("in.out.jsonl"));
        var over = BatchFiles.ReadJsonl(_folder.File("in.errors.jsonl"));
        Assert.NotEmpty(answered);
        Assert.NotEmpty(over);
        Assert.Equal(20, answered.Count + over.Count);
        Assert.All(over, line =>
        {
            Assert.Equal("budget_exceeded", line.GetProperty("error").GetProperty("code").GetString());
            Assert.Contains("the budget of the batch is $0.002", line.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        });
        // What exceeded the budget was never sent, and the summary says why those failed.
        Assert.Equal(answered.Count, server.Provider.Stats().Requests);
        Assert.Contains($"  budget:  $0.002; {over.Count} requests not sent, as it could no longer pay them", tight.Stdout, StringComparison.Ordinal);

        var bigger = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server, "--retry-failed", "--budget", "1"));

        Assert.True(bigger.ExitCode == 0, bigger.ToString());
        Assert.Contains($"  retried: {over.Count} requests that had failed or expired", bigger.Stdout, StringComparison.Ordinal);
        Assert.Equal(requests.Select(r => r.CustomId), CustomIds(_folder.File("in.out.jsonl")));
        Assert.All(requests, r => Assert.Equal(1, server.Provider.ExecutedCounts()[r.Key]));
    }

    [Fact]
    public async Task RetryFailed_OfABatchThatWasNeverRun_SendsEverything()
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(5));
        await using var server = await Simulators.StartHttpAsync();

        var result = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server, "--retry-failed"));

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("--retry-failed: in.jsonl had no saved batch yet, so every request is sent.", result.Stderr, StringComparison.Ordinal);
        Assert.Equal(5, CustomIds(_folder.File("in.out.jsonl")).Count);
    }

    [Theory]
    [InlineData("--budget -1", "--budget is an amount of US dollars of 0 or more, such as 2.50; got '-1'.")]
    [InlineData("--budget abc", "--budget is an amount of US dollars of 0 or more, such as 2.50; got 'abc'.")]
    [InlineData("--fresh --retry-failed", "--fresh starts over and --retry-failed keeps what succeeded: give one of them.")]
    public async Task BadBudgetsAndRetryFlags_AreRefused_BeforeAnythingIsSent(string flags, string message)
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(2));
        await using var server = await Simulators.StartHttpAsync();

        var result = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server, flags.Split(' ')));

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains(message, result.Stderr, StringComparison.Ordinal);
        Assert.Equal(0, server.Provider.Stats().Requests);
        Assert.False(File.Exists(input + ".shepherd.db"));
    }
}
