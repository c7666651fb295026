using System.Text.Json;

namespace Shepherd.Simulator;

/// <summary>What the simulator reads from a request body: the model, the prompt size and the output limit.</summary>
internal readonly record struct RequestShape(string Model, int PromptTokens, int? MaxTokens, int Dimensions, int Inputs)
{
    /// <summary>
    /// Prompt tokens counted the way providers' limiters estimate them: about four characters a
    /// token over the text of the request, plus a little per message.
    /// </summary>
    public static RequestShape? Read(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.String)
        {
            return null;
        }

        var characters = 0L;
        var messages = 0;
        foreach (var property in root.EnumerateObject())
        {
            if (property.NameEquals("messages") && property.Value.ValueKind == JsonValueKind.Array)
            {
                messages = property.Value.GetArrayLength();
            }

            if (property.NameEquals("messages") || property.NameEquals("system") || property.NameEquals("input")
                || property.NameEquals("prompt") || property.NameEquals("instructions"))
            {
                characters += TextLength(property.Value);
            }
        }

        int? max = null;
        foreach (var name in (ReadOnlySpan<string>)["max_tokens", "max_completion_tokens", "max_output_tokens"])
        {
            if (root.TryGetProperty(name, out var limit) && limit.TryGetInt32(out var value) && value > 0)
            {
                max = value;
            }
        }

        var dimensions = root.TryGetProperty("dimensions", out var dims) && dims.TryGetInt32(out var d) && d is > 0 and <= 4096 ? d : 8;
        var inputs = root.TryGetProperty("input", out var input) && input.ValueKind == JsonValueKind.Array ? Math.Max(1, input.GetArrayLength()) : 1;
        var prompt = (int)Math.Min(int.MaxValue, ((characters + 3) / 4) + (messages * 3) + 1);
        return new RequestShape(model.GetString()!, prompt, max, dimensions, inputs);
    }

    private static long TextLength(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.String => element.GetString()!.Length,
        JsonValueKind.Array => element.EnumerateArray().Sum(TextLength),
        JsonValueKind.Object => element.EnumerateObject().Where(p => !p.NameEquals("role") && !p.NameEquals("type")).Sum(p => TextLength(p.Value)),
        _ => 0,
    };
}
