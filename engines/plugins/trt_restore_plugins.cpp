// TensorRT plugins of trt-restore (IPluginV3 with the V3One core/build/runtime capabilities):
//
//   TrtRestoreMaskedAttention (version "1"): inputs theta, phi, g (B, 512, H, W) and valid
//       (B, 1, H, W); output attended (B, 512, H, W). Field "compute" (int32): -1 auto (the
//       default fp16x3 split products, ~fp32 accuracy), 0 ieee fp32, 1 plain fp16 products.
//   TrtRestorePatchMatch (version "1"): inputs x (B, C, H, W) and hole (B, 1, H, W); output the
//       composed tensor (B, C, H, W). Field "patch_size" (int32, default 2). Sides need not be
//       multiples of it: as the original's fold, uncovered margins are 0 where there are holes.
//
// Both take fp32 tensors, linear NCHW, and have output shape = input shape (no data-dependent
// shapes). The kernels are the C entry points of trt_restore_kernels.h, which launch the Triton
// AOT cubins through the CUDA driver API on TensorRT's stream. The library exports getCreators/setLoggerFinder, so it loads with
// IPluginRegistry::loadLibrary (trtexec --dynamicPlugins, Python registry.load_library) and can
// be serialised into version-compatible plans. It needs no symbol from libnvinfer.
#include "trt_restore_kernels.h"

#include <NvInferRuntime.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace
{

char const* const kNamespace = "";
char const* const kVersion = "1";
char const* const kAttentionName = "TrtRestoreMaskedAttention";
char const* const kPatchMatchName = "TrtRestorePatchMatch";

std::mutex gLoggerMutex;
ILoggerFinder* gLoggerFinder = nullptr;

void logMessage(ILogger::Severity severity, std::string const& message)
{
    ILogger* logger = nullptr;
    {
        std::lock_guard<std::mutex> lock(gLoggerMutex);
        if (gLoggerFinder != nullptr)
        {
            logger = gLoggerFinder->findLogger();
        }
    }
    if (logger != nullptr)
    {
        logger->log(severity, message.c_str());
    }
    else if (severity <= ILogger::Severity::kWARNING)
    {
        std::fprintf(stderr, "[trt-restore plugins] %s\n", message.c_str());
    }
}

int toIoDtype(DataType type)
{
    return type == DataType::kHALF ? TRTR_FLOAT16 : TRTR_FLOAT32;
}

bool isSupportedType(DataType type)
{
    return type == DataType::kFLOAT;
}

// Reads an int32 field; returns false if the field is present with the wrong type.
bool readIntField(PluginFieldCollection const* fc, char const* name, int32_t& value)
{
    if (fc == nullptr)
    {
        return true;
    }
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& field = fc->fields[i];
        if (field.name != nullptr && std::strcmp(field.name, name) == 0)
        {
            if (field.type != PluginFieldType::kINT32 || field.length < 1 || field.data == nullptr)
            {
                return false;
            }
            value = *static_cast<int32_t const*>(field.data);
        }
    }
    return true;
}

// Shared machinery: one input type for all tensors, linear format, output shape = input 0 shape.
class PluginBase : public IPluginV3, public IPluginV3OneCore, public IPluginV3OneBuild, public IPluginV3OneRuntime
{
public:
    PluginBase(char const* name, int32_t nbInputs)
        : mName(name)
        , mNbInputs(nbInputs)
    {
    }
    PluginBase(PluginBase const&) = default;
    PluginBase& operator=(PluginBase const&) = delete;
    ~PluginBase() override = default;

    IPluginCapability* getCapabilityInterface(PluginCapabilityType type) noexcept override
    {
        switch (type)
        {
        case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
        case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
        case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
        }
        return nullptr;
    }

    char const* getPluginName() const noexcept override
    {
        return mName;
    }
    char const* getPluginVersion() const noexcept override
    {
        return kVersion;
    }
    char const* getPluginNamespace() const noexcept override
    {
        return kNamespace;
    }

    int32_t getNbOutputs() const noexcept override
    {
        return 1;
    }

    int32_t getOutputDataTypes(
        DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept override
    {
        if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != 1 || nbInputs != mNbInputs)
        {
            return -1;
        }
        outputTypes[0] = inputTypes[0];
        return 0;
    }

    int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
        int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& /*exprBuilder*/) noexcept override
    {
        if (inputs == nullptr || outputs == nullptr || nbInputs != mNbInputs || nbOutputs != 1 || inputs[0].nbDims != 4)
        {
            return -1;
        }
        outputs[0] = inputs[0];
        return 0;
    }

    bool supportsFormatCombination(
        int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept override
    {
        if (inOut == nullptr || nbInputs != mNbInputs || nbOutputs != 1 || pos < 0 || pos >= nbInputs + nbOutputs)
        {
            return false;
        }
        PluginTensorDesc const& desc = inOut[pos].desc;
        if (desc.format != TensorFormat::kLINEAR || !isSupportedType(desc.type))
        {
            return false;
        }
        return pos == 0 || desc.type == inOut[0].desc.type;
    }

    int32_t configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override
    {
        if (in == nullptr || out == nullptr || nbInputs != mNbInputs || nbOutputs != 1)
        {
            return -1;
        }
        for (int32_t i = 0; i < nbInputs; ++i)
        {
            if (in[i].desc.dims.nbDims != 4)
            {
                logMessage(ILogger::Severity::kERROR, std::string(mName) + ": every input must be 4-D (NCHW)");
                return -1;
            }
        }
        return checkDims(in[0].desc.dims) ? 0 : -1;
    }

    int32_t onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override
    {
        if (in == nullptr || out == nullptr || nbInputs != mNbInputs || nbOutputs != 1)
        {
            return -1;
        }
        Dims const& x = in[0].dims;
        for (int32_t i = 1; i < nbInputs; ++i)
        {
            Dims const& d = in[i].dims;
            bool const isMask = i == nbInputs - 1;
            if (d.nbDims != 4 || d.d[0] != x.d[0] || d.d[2] != x.d[2] || d.d[3] != x.d[3]
                || (isMask ? d.d[1] != 1 : d.d[1] != x.d[1]))
            {
                logMessage(ILogger::Severity::kERROR, std::string(mName) + ": input shapes do not match");
                return -1;
            }
        }
        return checkDims(x) ? 0 : -1;
    }

    IPluginV3* attachToContext(IPluginResourceContext* /*context*/) noexcept override
    {
        return clone();
    }

protected:
    // Static checks of the data input's dims (-1 = not known yet).
    virtual bool checkDims(Dims const& dims) const noexcept = 0;

    int32_t report(int status) const noexcept
    {
        if (status == TRTR_OK)
        {
            return 0;
        }
        logMessage(ILogger::Severity::kERROR, std::string(mName) + ": " + trtr_status_string(status));
        return -1;
    }

    char const* mName;
    int32_t mNbInputs;
};

class MaskedAttentionPlugin final : public PluginBase
{
public:
    explicit MaskedAttentionPlugin(int32_t compute)
        : PluginBase(kAttentionName, 4)
        , mCompute(compute)
    {
        initFields();
    }
    MaskedAttentionPlugin(MaskedAttentionPlugin const& other)
        : PluginBase(other)
        , mCompute(other.mCompute)
    {
        initFields();
    }
    MaskedAttentionPlugin& operator=(MaskedAttentionPlugin const&) = delete;

    IPluginV3* clone() noexcept override
    {
        try
        {
            return new MaskedAttentionPlugin(*this);
        }
        catch (...)
        {
            return nullptr;
        }
    }

    size_t getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept override
    {
        if (inputs == nullptr || nbInputs != mNbInputs)
        {
            return 0;
        }
        Dims const& d = inputs[0].max;
        return trtr_masked_attention_workspace_size(static_cast<int>(d.d[0]), static_cast<int>(d.d[1]),
            static_cast<int>(d.d[2] * d.d[3]), toIoDtype(inputs[0].desc.type), mCompute);
    }

    int32_t enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override
    {
        Dims const& d = inputDesc[0].dims;
        int const batch = static_cast<int>(d.d[0]);
        int const channels = static_cast<int>(d.d[1]);
        int const positions = static_cast<int>(d.d[2] * d.d[3]);
        int const dtype = toIoDtype(inputDesc[0].type);
        size_t const bytes = trtr_masked_attention_workspace_size(batch, channels, positions, dtype, mCompute);
        return report(trtr_masked_attention(inputs[0], inputs[1], inputs[2], inputs[3], outputs[0], batch, channels,
            positions, dtype, mCompute, workspace, bytes, stream));
    }

    PluginFieldCollection const* getFieldsToSerialize() noexcept override
    {
        return &mFieldCollection;
    }

protected:
    bool checkDims(Dims const& dims) const noexcept override
    {
        if (dims.d[1] != -1 && dims.d[1] != TRTR_ATTENTION_CHANNELS)
        {
            logMessage(ILogger::Severity::kERROR, "TrtRestoreMaskedAttention: channels must be 512");
            return false;
        }
        return true;
    }

private:
    void initFields()
    {
        mFields.clear();
        mFields.emplace_back("compute", &mCompute, PluginFieldType::kINT32, 1);
        mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
        mFieldCollection.fields = mFields.data();
    }

    int32_t mCompute;
    std::vector<PluginField> mFields;
    PluginFieldCollection mFieldCollection{};
};

class PatchMatchPlugin final : public PluginBase
{
public:
    explicit PatchMatchPlugin(int32_t patchSize)
        : PluginBase(kPatchMatchName, 2)
        , mPatchSize(patchSize)
    {
        initFields();
    }
    PatchMatchPlugin(PatchMatchPlugin const& other)
        : PluginBase(other)
        , mPatchSize(other.mPatchSize)
    {
        initFields();
    }
    PatchMatchPlugin& operator=(PatchMatchPlugin const&) = delete;

    IPluginV3* clone() noexcept override
    {
        try
        {
            return new PatchMatchPlugin(*this);
        }
        catch (...)
        {
            return nullptr;
        }
    }

    size_t getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept override
    {
        if (inputs == nullptr || nbInputs != mNbInputs)
        {
            return 0;
        }
        Dims const& d = inputs[0].max;
        return trtr_patch_match_workspace_size(static_cast<int>(d.d[0]), static_cast<int>(d.d[1]),
            static_cast<int>(d.d[2]), static_cast<int>(d.d[3]), mPatchSize);
    }

    int32_t enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override
    {
        Dims const& d = inputDesc[0].dims;
        int const batch = static_cast<int>(d.d[0]);
        int const channels = static_cast<int>(d.d[1]);
        int const height = static_cast<int>(d.d[2]);
        int const width = static_cast<int>(d.d[3]);
        size_t const bytes = trtr_patch_match_workspace_size(batch, channels, height, width, mPatchSize);
        return report(trtr_patch_match(inputs[0], inputs[1], outputs[0], batch, channels, height, width, mPatchSize,
            toIoDtype(inputDesc[0].type), workspace, bytes, stream));
    }

    PluginFieldCollection const* getFieldsToSerialize() noexcept override
    {
        return &mFieldCollection;
    }

protected:
    // Any height and width: sides off the patch multiple follow the original's fold (whole
    // patches only, margins 0 when there is a hole patch), as trtr_patch_match does.
    bool checkDims(Dims const& /*dims*/) const noexcept override
    {
        return true;
    }

private:
    void initFields()
    {
        mFields.clear();
        mFields.emplace_back("patch_size", &mPatchSize, PluginFieldType::kINT32, 1);
        mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
        mFieldCollection.fields = mFields.data();
    }

    int32_t mPatchSize;
    std::vector<PluginField> mFields;
    PluginFieldCollection mFieldCollection{};
};

class CreatorBase : public IPluginCreatorV3One
{
public:
    CreatorBase(char const* name, char const* fieldName)
        : mName(name)
    {
        mFields.emplace_back(fieldName, nullptr, PluginFieldType::kINT32, 1);
        mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
        mFieldCollection.fields = mFields.data();
    }

    PluginFieldCollection const* getFieldNames() noexcept override
    {
        return &mFieldCollection;
    }
    char const* getPluginName() const noexcept override
    {
        return mName;
    }
    char const* getPluginVersion() const noexcept override
    {
        return kVersion;
    }
    char const* getPluginNamespace() const noexcept override
    {
        return kNamespace;
    }

private:
    char const* mName;
    std::vector<PluginField> mFields;
    PluginFieldCollection mFieldCollection{};
};

class MaskedAttentionCreator final : public CreatorBase
{
public:
    MaskedAttentionCreator()
        : CreatorBase(kAttentionName, "compute")
    {
    }

    IPluginV3* createPlugin(char const* /*name*/, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept override
    {
        int32_t compute = TRTR_COMPUTE_AUTO;
        if (!readIntField(fc, "compute", compute) || compute < TRTR_COMPUTE_AUTO || compute > TRTR_COMPUTE_FP16)
        {
            logMessage(ILogger::Severity::kERROR, "TrtRestoreMaskedAttention: field 'compute' must be int32 -1, 0 or 1");
            return nullptr;
        }
        try
        {
            return new MaskedAttentionPlugin(compute);
        }
        catch (...)
        {
            return nullptr;
        }
    }
};

class PatchMatchCreator final : public CreatorBase
{
public:
    PatchMatchCreator()
        : CreatorBase(kPatchMatchName, "patch_size")
    {
    }

    IPluginV3* createPlugin(char const* /*name*/, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept override
    {
        int32_t patchSize = 2;
        if (!readIntField(fc, "patch_size", patchSize) || patchSize < 1)
        {
            logMessage(ILogger::Severity::kERROR, "TrtRestorePatchMatch: field 'patch_size' must be a positive int32");
            return nullptr;
        }
        try
        {
            return new PatchMatchPlugin(patchSize);
        }
        catch (...)
        {
            return nullptr;
        }
    }
};

} // namespace

extern "C" TRTR_API void setLoggerFinder(ILoggerFinder* finder)
{
    std::lock_guard<std::mutex> lock(gLoggerMutex);
    gLoggerFinder = finder;
}

extern "C" TRTR_API IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static MaskedAttentionCreator attentionCreator;
    static PatchMatchCreator patchMatchCreator;
    static IPluginCreatorInterface* const creators[] = {&attentionCreator, &patchMatchCreator};
    nbCreators = static_cast<int32_t>(sizeof(creators) / sizeof(creators[0]));
    return creators;
}
