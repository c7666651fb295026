using System.Text;
using System.Text.Json.Nodes;
using CsCheck;
using Shepherd.Engine.Formats;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Formats;

/// <summary>
/// The simulator's structured answers, checked as Shepherd checks them: every answer fits its
/// schema unless the options ask for broken JSON or broken schemas, which come in their shares,
/// in every dialect and for every schema of a family.
/// </summary>
public sealed class SimulatedStructuredAnswersTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private const string Review = """{"type":"object","properties":{"sentiment":{"enum":["positive","neutral","negative"]},"features":{"type":"array","items":{"type":"string","minLength":12,"maxLength":20},"minItems":1,"maxItems":2},"score":{"type":"integer","minimum":1,"maximum":5},"weight":{"type":"number","exclusiveMinimum":0,"maximum":2.5},"verified":{"type":["boolean","null"]}},"required":["sentiment","features","score","verified"],"additionalProperties":false}""";

    private const string Linked = """{"$defs":{"node":{"type":"object","properties":{"value":{"type":"number"},"next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},"required":["value","next"],"additionalProperties":false}},"type":"object","properties":{"head":{"$ref":"#/$defs/node"},"kind":{"const":"list"}},"required":["head","kind"],"additionalProperties":false}""";

    private const string Flat = """{"type":"object","properties":{"label":{"type":"string"},"confidence":{"type":"number"}},"required":["label"]}""";

    /// <summary>A structured request of a dialect and schema (null: any JSON object), its prompt made distinct by <paramref name="n"/>.</summary>
    private static (string Url, string Body) Request(int dialect, string? schema, int n)
    {
        JsonNode Schema() => JsonNode.Parse(schema ?? Flat)!;
        var prompt = $"Review {n}";
        return dialect switch
        {
            0 => (BatchEndpoints.ChatCompletions, new JsonObject
            {
                ["model"] = "gpt-4o-mini",
                ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = prompt }),
                ["response_format"] = schema is null
                    ? new JsonObject { ["type"] = "json_object" }
                    : new JsonObject { ["type"] = "json_schema", ["json_schema"] = new JsonObject { ["name"] = "r", ["strict"] = true, ["schema"] = Schema() } },
            }.ToJsonString()),
            1 => (BatchEndpoints.Responses, new JsonObject
            {
                ["model"] = "gpt-4o-mini",
                ["input"] = prompt,
                ["text"] = new JsonObject { ["format"] = new JsonObject { ["type"] = "json_schema", ["name"] = "r", ["schema"] = Schema() } },
            }.ToJsonString()),
            _ => (BatchEndpoints.Messages, new JsonObject
            {
                ["model"] = "claude-haiku-4-5",
                ["max_tokens"] = 200,
                ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = prompt }),
                ["tools"] = new JsonArray(new JsonObject { ["name"] = "record", ["input_schema"] = Schema() }),
                ["tool_choice"] = new JsonObject { ["type"] = "tool", ["name"] = "record" },
            }.ToJsonString()),
        };
    }

    private static async Task<OutputVerdict> AnswerAsync(SimulatedProvider simulator, (string Url, string Body) request)
    {
        var body = Encoding.UTF8.GetBytes(request.Body);
        var response = await simulator.HandleAsync(new SimulatedRequest("POST", request.Url, body, "Bearer k"), Ct);
        Assert.Equal(200, response.StatusCode);
        var contract = StructuredOutput.Of(request.Url, body);
        Assert.NotNull(contract);
        var check = StructuredOutput.Check(contract, request.Url, response.Body);
        Assert.Equal(check.Verdict == OutputVerdict.Valid, check.Errors.Count == 0);
        return check.Verdict;
    }

    [Fact]
    public async Task WithoutBrokenShares_EveryAnswerFitsItsSchema_InEveryDialect()
    {
        var simulator = Simulators.Create();
        foreach (var dialect in new[] { 0, 1, 2 })
        {
            foreach (var schema in new string?[] { Review, Linked, Flat, null })
            {
                for (var n = 0; n < 20; n++)
                {
                    Assert.Equal(OutputVerdict.Valid, await AnswerAsync(simulator, Request(dialect, schema, n)));
                }
            }
        }
    }

    [Fact]
    public async Task BrokenJsonAndBrokenSchemas_ComeInTheirShares()
    {
        await Gen.Select(Gen.Double[0, 0.5], Gen.Double[0, 0.5], Gen.Int[0, 2], Gen.Int[0, 2].Select(i => new[] { Review, Linked, Flat }[i]), Gen.Int[1, 1000]).SampleAsync(async (broken, breaking, dialect, schema, seed) =>
        {
            var simulator = Simulators.Create(new SimulatorOptions { BrokenJsonRate = broken, SchemaBreakRate = breaking }, seed: seed);
            const int count = 300;
            var verdicts = new List<OutputVerdict>();
            for (var n = 0; n < count; n++)
            {
                verdicts.Add(await AnswerAsync(simulator, Request(dialect, schema, n)));
            }

            // A forced tool's input is always an object: what would not parse breaks the schema instead.
            var notJson = dialect == 2 ? 0 : broken;
            var invalid = dialect == 2 ? broken + breaking : breaking;
            Assert.InRange(verdicts.Count(v => v == OutputVerdict.NotJson) / (double)count, notJson - 0.1, notJson + 0.1);
            Assert.InRange(verdicts.Count(v => v == OutputVerdict.Invalid) / (double)count, invalid - 0.1, invalid + 0.1);
        }, iter: 12);
    }
}
