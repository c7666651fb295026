using System.Text;
using Shepherd.Simulator.Batches;

namespace Shepherd.Simulator;

/// <summary>
/// The lines of batch jobs: each answered by the same generator as a realtime request (the
/// same shapes, usage, context limit and server errors), its fate drawn from the provider's
/// seeded randomizer when the job is created, and none counted against the realtime limits.
/// </summary>
public sealed partial class SimulatedProvider
{
    private readonly BatchApis _batches;

    /// <summary>
    /// Draws the fates of a new job's lines: when each finishes (uniformly within the job's
    /// latency), whether it never does (the expire share), and what it is answered.
    /// </summary>
    internal IReadOnlyList<BatchLine> DrawLines(string batchId, string endpoint, IReadOnlyList<BatchRequest> requests, DateTimeOffset createdAt)
    {
        var draws = new (double Finish, bool Expires, double Roll)[requests.Count];
        lock (_gate)
        {
            for (var i = 0; i < draws.Length; i++)
            {
                draws[i] = (_random.NextDouble(), _random.NextDouble() < _options.BatchExpireShare, _random.NextDouble());
            }
        }

        var anthropic = endpoint == "/v1/messages";
        var lines = new BatchLine[requests.Count];
        for (var i = 0; i < lines.Length; i++)
        {
            var (customId, body) = requests[i];
            var key = KeyOf(body);
            _received.AddOrUpdate(key, 1, (_, n) => n + 1);
            if (draws[i].Expires)
            {
                lines[i] = new BatchLine(customId, key, null, null);
                continue;
            }

            var finishesAt = createdAt + (_options.BatchLatency * draws[i].Finish);
            var requestId = $"req_{KeyOf(Encoding.UTF8.GetBytes(batchId + "\n" + customId)):x16}";
            lines[i] = new BatchLine(customId, key, finishesAt, AnswerLine(endpoint, anthropic, body, draws[i].Roll, finishesAt, requestId));
        }

        return lines;
    }

    /// <summary>Counts a batch line's success as an execution of its body, as a realtime answer is counted.</summary>
    internal void CountExecution(ulong key) => Executed(key);

    /// <summary>What a line is answered: a refusal of its body, a 500, 503 or 529 at their rates, or the answer of its endpoint.</summary>
    private LineAnswer AnswerLine(string endpoint, bool anthropic, byte[] body, double roll, DateTimeOffset at, string requestId)
    {
        // Resets, hangs and 502s are faults of a connection; a line has none.
        var refused = Inspect(body, anthropic, out var inspected)
            ?? ((roll -= _options.Error500Rate) < 0 ? InternalError(anthropic, []) : ServerFault(roll, anthropic, []));
        if (refused is not null)
        {
            return new LineAnswer(refused.StatusCode, refused.Body, requestId, 0, 0);
        }

        inspected = inspected with { Fate = Fate(roll - _options.Error503Rate - _options.Error529Rate, 1 - _options.Error500Rate - _options.Error503Rate - _options.Error529Rate) };

        var answer = Served(endpoint, inspected, OutputTokens(inspected.Shape, inspected.Seed, endpoint), cacheRead: false, at, out var usage);
        return new LineAnswer(200, answer, requestId, usage.Input + usage.CacheWrite + usage.CacheRead, usage.Output);
    }
}
