using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Shepherd.Server.Tests;
using Shepherd.Testing;

// The docs' snippets pass no CancellationToken, and run here as the docs show them.
#pragma warning disable xUnit1051

namespace Shepherd.Client.Tests;

/// <summary>
/// Every C# block of README.md and docs/client.md runs here against a real server on 127.0.0.1,
/// copied verbatim but for the server's address and key (<see cref="Local"/>), and a test checks
/// that each block still appears in this file or in ReviewAnalysisExample.cs.
/// </summary>
public sealed partial class DocumentedExamplesTests
{
    /// <summary>What the docs write, and what a test server answers to instead.</summary>
    private static readonly (string Docs, string Test)[] Local =
    [
        ("new Uri(\"http://127.0.0.1:8080\")", "server.BaseUrl"),
        ("\"sk-local\"", "RunningServer.Key"),
        ("Environment.GetEnvironmentVariable(\"SHEPHERD_API_KEY\")", "RunningServer.Key"),
        ("CancellationToken.None", "TestContext.Current.CancellationToken"),
    ];

    private static readonly List<string> reviews = ["Works well.", "Broke after a day.", "Fine."];

    [Fact]
    public async Task TheReadmeClientSnippet_Runs_WhenNothingFailed()
    {
        await using var server = await RunningServer.StartAsync();
        // README.md, "The .NET client":
        using var client = new ShepherdClient(new ShepherdClientOptions { BaseUrl = server.BaseUrl, ApiKey = RunningServer.Key });
        var batch = await client.CreateBatchAsync(new NewBatch
        {
            Model = "gpt-4o-mini",
            Requests = [.. reviews.Select((r, i) => BatchItem.FromPrompt($"review-{i}", $"Positive or negative? {r}"))],
        });
        await client.WaitForCompletionAsync(batch.Id, new Progress<BatchProgress>(p => Console.WriteLine($"{p.Percent:0}%  ETA {p.Eta}")));
        await foreach (var result in client.GetResultsAsync(batch.Id)) { /* result.Text, result.Usage, result.Error */ }
        await client.RetryFailedAsync(batch.Id);
        // end of README.md's snippet.

        Assert.Equal(3, (await client.GetBatchAsync(batch.Id, TestContext.Current.CancellationToken)).Succeeded);
    }

    [Fact]
    public async Task TheWiredUpExample_AndTheCollectorSnippet_Run()
    {
        await using var server = await RunningServer.StartAsync();
        // docs/client.md, "Wired up":
        using var client = new ShepherdClient(new ShepherdClientOptions
        {
            BaseUrl = server.BaseUrl,
            ApiKey = RunningServer.Key,
        });
        var sentiments = await ReviewAnalysis.ClassifyAsync(client, reviews, Console.Out, TestContext.Current.CancellationToken);
        // end.
        var review = reviews[0];
        // docs/client.md, "Collecting single calls into batches":
        await using var collector = new BatchCollector(client, new BatchCollectorOptions
        {
            Model = "gpt-4o-mini",
            MaxBatchSize = 1000,                        // flush at this many requests...
            MaxAge = TimeSpan.FromSeconds(5),           // ...or when the oldest has waited this long
            TargetLatency = TimeSpan.FromMinutes(2),    // adapt the flush size to keep results this quick
        });

        BatchResult result = await collector.AddAsync($"Classify: {review}");   // from any number of callers
        // end.

        Assert.Equal(3, sentiments.Count);
        Assert.Equal(ResultStatus.Succeeded, result.Status);
    }

    [Fact]
    public async Task TheTypedChatAndDependencyInjectionSnippets_Run()
    {
        await using var server = await RunningServer.StartAsync();
        var review = reviews[1];
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder();
        builder.Configuration.AddInMemoryCollection([KeyValuePair.Create("Shepherd:BaseUrl", (string?)server.BaseUrl.ToString()), KeyValuePair.Create("Shepherd:ApiKey", (string?)RunningServer.Key)]);
        // docs/client.md, "Typed chat requests":
        var item = BatchItem.FromChat("review-7", new ChatRequest
        {
            System = "You classify product reviews.",
            User = review,
            MaxTokens = 50,
            ResponseFormat = ResponseFormat.JsonObject,
        });
        // end.
        // docs/client.md, "Dependency injection":
        builder.Services.AddShepherdClient(builder.Configuration.GetSection("Shepherd"));
        // appsettings.json: "Shepherd": { "BaseUrl": "http://127.0.0.1:8080", "ApiKey": "…", "Api": "Shepherd" }
        // end.
        using var host = builder.Build();

        var client = host.Services.GetRequiredService<ShepherdClient>();
        var batch = await client.CreateBatchAsync(new NewBatch { Model = "gpt-4o-mini", Requests = [item] });
        var done = await client.WaitForCompletionAsync(batch.Id, cancellationToken: TestContext.Current.CancellationToken);

        Assert.True(done.AllSucceeded, done.Batch.ToString());
    }

    [Fact]
    public async Task TheCallsThatCanWaitSnippet_Runs()
    {
        await using var server = await RunningServer.StartAsync(tune: o => o.CallCollectAge = TimeSpan.FromMilliseconds(100));
        using var client = new ShepherdClient(new ShepherdClientOptions { BaseUrl = server.BaseUrl, ApiKey = RunningServer.Key });
        var review = reviews[2];
        // docs/client.md, "Calls that can wait":
        // One call, answered within 30 minutes, at the batch price where the provider has one.
        CallAnswer answer = await client.CallAsync("gpt-4o-mini", new ChatRequest { User = $"Positive or negative? {review}" }, TimeSpan.FromMinutes(30));
        Console.WriteLine($"{answer.CallId}: {answer.Text}");

        // Or keep the id, and fetch the answer by it later: from this process, or after a restart of it.
        string callId = await client.StartCallAsync("/v1/embeddings", new JsonObject { ["model"] = "text-embedding-3-small", ["input"] = review }, TimeSpan.FromHours(6));
        CallAnswer embedding = await client.GetCallAsync(callId);
        // end.

        Assert.Equal((200, 200), (answer.StatusCode, embedding.StatusCode));
        Assert.False(string.IsNullOrEmpty(answer.Text));
        Assert.Equal((callId, "list", (string?)null), (embedding.CallId, embedding.Body.GetProperty("object").GetString(), embedding.Text));
    }

    [Theory]
    [InlineData("README.md")]
    [InlineData("docs/client.md")]
    public void EveryCSharpBlockOfTheDocs_RunsInATest(string page)
    {
        var root = RepositoryFiles.Root;
        var tests = Path.Combine(root, "tests", "Shepherd.Client.Tests");
        var code = Normal(File.ReadAllText(Path.Combine(tests, "DocumentedExamplesTests.cs")) + File.ReadAllText(Path.Combine(tests, "ReviewAnalysisExample.cs")));
        var blocks = CSharpBlock().Matches(File.ReadAllText(Path.Combine(root, page)).ReplaceLineEndings("\n")).Select(m => m.Groups[1].Value).ToList();

        Assert.NotEmpty(blocks);
        foreach (var block in blocks)
        {
            var local = Local.Aggregate(block, (text, swap) => text.Replace(swap.Docs, swap.Test, StringComparison.Ordinal));
            Assert.True(code.Contains(Normal(local), StringComparison.Ordinal), $"{page} shows code no test runs:\n{block}");
        }
    }

    /// <summary>The lines without their indentation or blank lines: a block indented into a method is the same code.</summary>
    private static string Normal(string text) =>
        string.Join('\n', text.ReplaceLineEndings("\n").Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0));

    [GeneratedRegex("```csharp\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex CSharpBlock();
}
