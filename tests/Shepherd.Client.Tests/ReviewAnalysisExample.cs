using Shepherd.Server.Tests;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Client.Tests;

// docs/client.md shows the code between the markers below; a test checks that the two agree.
// example:start
public static class ReviewAnalysis
{
    public static async Task<IReadOnlyDictionary<string, string>> ClassifyAsync(
        ShepherdClient client, IReadOnlyList<string> reviews, TextWriter log, CancellationToken cancellationToken)
    {
        // One request per review; the custom id brings each answer back to its review.
        var batch = await client.CreateBatchAsync(new NewBatch
        {
            Model = "gpt-4o-mini",
            Metadata = new Dictionary<string, string> { ["job"] = "review-sentiment" },
            Requests = [.. reviews.Select((review, i) => BatchItem.FromPrompt(
                $"review-{i}", $"Is this review positive, negative or neutral? Answer in one word.\n\n{review}"))],
        }, cancellationToken);
        log.WriteLine($"Created {batch.Id} with {batch.Total} requests.");

        // Wait, with progress: polls from 2 s, growing 1.5x to 30 s.
        var progress = new Progress<BatchProgress>(p =>
            log.WriteLine($"{p.Percent,5:0.0}%  {p.Finished}/{p.Total}  ${p.CostUsd:0.0000}  ETA {p.Eta?.ToString(@"mm\:ss") ?? "--:--"}"));
        var done = await client.WaitForCompletionAsync(batch.Id, progress, cancellationToken: cancellationToken);
        if (done.TimedOut)
        {
            throw new TimeoutException($"{batch.Id} is still running; wait for it again later (nothing was cancelled).");
        }

        // Stream the answers: one page in memory at a time, however many reviews there are.
        var sentiments = new Dictionary<string, string>();
        await foreach (var result in client.GetResultsAsync(batch.Id, cancellationToken))
        {
            if (result.Status == ResultStatus.Succeeded)
            {
                sentiments[result.CustomId] = result.Text!.Trim();
            }
        }

        // Retry what failed, once: a new batch of only those requests, linked to the first
        // (null when nothing failed).
        if (await client.RetryFailedAsync(batch.Id, cancellationToken) is { } retry)
        {
            log.WriteLine($"Retrying {retry.Total} failed requests as {retry.Id}.");
            await client.WaitForCompletionAsync(retry.Id, progress, cancellationToken: cancellationToken);
            await foreach (var result in client.GetResultsAsync(retry.Id, cancellationToken))
            {
                if (result.Status == ResultStatus.Succeeded)
                {
                    sentiments[result.CustomId] = result.Text!.Trim();
                }
                else
                {
                    log.WriteLine($"{result.CustomId} failed again: {result.Error?.Message}");
                }
            }
        }

        return sentiments;
    }
}
// example:end

public sealed class ReviewAnalysisExampleTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task TheDocumentedExample_Classifies500Reviews_AndRetriesWhatFailed()
    {
        // Long reviews exceed the simulated model's context: they fail, and fail again on the retry.
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { ContextTokens = 60 });
        using var client = ClientTests.ClientOf(server);
        var reviews = Enumerable.Range(0, 500).Select(i => i % 50 == 0
            ? $"Review {i}: " + string.Concat(Enumerable.Repeat("far too long a review for the context window. ", 20))
            : $"Review {i}: works well, arrived on time.").ToList();
        using var log = new StringWriter();

        var sentiments = await ReviewAnalysis.ClassifyAsync(client, reviews, log, Ct);

        Assert.Equal(490, sentiments.Count);
        Assert.DoesNotContain("review-0", sentiments.Keys);
        Assert.All(sentiments.Values, text => Assert.False(string.IsNullOrWhiteSpace(text)));
        var output = log.ToString();
        Assert.Contains("Retrying 10 failed requests", output, StringComparison.Ordinal);
        Assert.Contains("review-50 failed again", output, StringComparison.Ordinal);
    }

    [Fact]
    public void TheDocs_ShowExactlyTheCodeThatRuns()
    {
        var source = RepositoryFiles.Read("tests", "Shepherd.Client.Tests", "ReviewAnalysisExample.cs");
        var docs = RepositoryFiles.Read("docs", "client.md");
        var example = Between(source, "// example:start\n", "// example:end");
        var shown = Between(docs, "```csharp\n", "```");

        Assert.Equal(example, shown);
    }

    private static string Between(string text, string start, string end)
    {
        var from = text.IndexOf(start, StringComparison.Ordinal) + start.Length;
        return text[from..text.IndexOf(end, from, StringComparison.Ordinal)].ReplaceLineEndings("\n");
    }
}
